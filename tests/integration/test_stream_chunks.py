"""A streamed chat completion is OpenAI's chunk sequence, with generation_context on or off.

Issue 13: the gateway used to end every stream of a project with
``generation_context`` on (the default) with one extra ``{"choices": []}``
chunk, so a client that reads ``chunk.choices[0]`` crashed on it. Now the
client gets the chunks the provider (here the fake, which streams as OpenAI
does) sends for its request: a ``choices: []`` chunk only when it asked for
``stream_options.include_usage``, exactly one, last; the line items ride on
the last chunk (the usage chunk if asked, else the last finishing one).

Each case streams the same body through the gateway (raw SSE with httpx, and
the official ``openai`` SDK) and from the fake directly, for a project with
generation_context on and one with it off; the Gateway API stream
(``POST /api/{project}/{slug}``) must give the same chunks as ``/v1``. Only
OpenAI-compatible providers are in the integration catalog: the Anthropic and
Gemini adapters' chunk sequences are covered by tests/conformance.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from devtools.stack import Stack
from tests.integration.helpers import poll, sse_data, without_stream_generation_context

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHAT = "/v1/chat/completions"
SLUG = "streamer"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
#: What each kind of request adds to the chat body.
KINDS: dict[str, dict[str, Any]] = {
    "plain": {},
    "tools": {"tools": TOOLS, "tool_choice": "required"},
    "n2-tools": {"tools": TOOLS, "tool_choice": "required", "n": 2},
}


@dataclass(frozen=True)
class Project:
    """An ``ai_gateway`` project with a streaming endpoint and a chat key."""

    id: str
    key: str
    context: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


def _project(http: httpx.Client, stack: Stack, *, context: bool) -> Project:
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    resp = http.post(
        "/admin/projects",
        json={
            "name": f"chunks-{secrets.token_hex(4)}",
            "type": "ai_gateway",
            "settings": {"generation_context": context},
        },
        headers=operator,
    )
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    resp = http.post(
        f"/admin/projects/{pid}/keys",
        json={"name": "k", "scopes": ["chat", "admin"]},
        headers=operator,
    )
    assert resp.status_code == 201, resp.text
    project = Project(pid, resp.json()["key"], context)
    resp = http.post(
        f"/admin/projects/{pid}/endpoints",
        json={"slug": SLUG, "model": "mock-chat", "streaming_enabled": True},
        headers=project.headers,
    )
    assert resp.status_code == 201, resp.text

    def settled() -> bool | None:  # the edge's caches hold the project, its setting and endpoint
        body = {"model": "mock-chat", "messages": [{"role": "user", "content": "ready?"}]}
        answer = http.post(CHAT, json=body, headers=project.headers)
        endpoint = http.post(
            f"/api/{pid}/{SLUG}", json={"message": "ready?"}, headers=project.headers
        )
        if answer.status_code != 200 or endpoint.status_code != 200:
            return None
        return ("generation_context" in answer.json()) is context or None

    poll(settled)
    return project


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def projects(http: httpx.Client, stack: Stack) -> dict[bool, Project]:
    """generation_context on (the default's value, set explicitly) and off."""
    return {context: _project(http, stack, context=context) for context in (True, False)}


def _body(kind: str, include_usage: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": f"stream me {secrets.token_hex(6)}"}],
        "stream": True,
        **KINDS[kind],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def _sse(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
    with httpx.stream("POST", url, json=body, headers=headers, timeout=20) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return sse_data(resp.iter_lines())


def _assert_openais_sequence(data: list[str], *, include_usage: bool) -> list[dict[str, Any]]:
    """Every chunk has a choice but, iff usage was asked, the last; then [DONE]."""
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert [c["choices"] == [] for c in chunks] == [False] * (len(chunks) - 1) + [include_usage]
    if include_usage:
        assert chunks[-1]["usage"]["total_tokens"] > 0
    return chunks


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "include-usage"])
@pytest.mark.parametrize("context", [True, False], ids=["context-on", "context-off"])
def test_raw_sse_is_the_providers_chunks(
    projects: dict[bool, Project],
    base_url: str,
    fake_provider_url: str,
    kind: str,
    include_usage: bool,
    context: bool,
) -> None:
    project = projects[context]
    body = _body(kind, include_usage)

    through = _sse(f"{base_url}{CHAT}", body, project.headers)
    direct = _sse(f"{fake_provider_url}{CHAT}", body)

    chunks = _assert_openais_sequence(through, include_usage=include_usage)
    _assert_openais_sequence(direct, include_usage=include_usage)  # the fake is OpenAI-shaped
    if not context:
        assert through == direct  # byte for byte
        assert not any("generation_context" in c for c in chunks)
        return
    assert without_stream_generation_context(through) == direct
    carrier = chunks[-1]
    if include_usage:
        assert carrier["choices"] == [] and carrier["usage"] is not None
    else:
        assert carrier["choices"][0]["finish_reason"] in ("stop", "tool_calls")
        assert carrier["choices"][0]["delta"] == {}
    items = carrier["generation_context"]["generated_usage"]
    assert [i["sku"] for i in items] == [
        "inference.chat_completions.in",
        "inference.chat_completions.out",
    ]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "include-usage"])
@pytest.mark.parametrize("context", [True, False], ids=["context-on", "context-off"])
def test_the_sdk_can_read_choices_0_of_every_chunk(
    projects: dict[bool, Project], base_url: str, kind: str, include_usage: bool, context: bool
) -> None:
    project = projects[context]
    body = _body(kind, include_usage)
    with openai.OpenAI(
        base_url=f"{base_url}/v1", api_key=project.key, max_retries=0, timeout=30
    ) as client:
        chunks = list(client.chat.completions.create(**body))

    usage_chunks = chunks[-1:] if include_usage else []
    for chunk in chunks[: len(chunks) - len(usage_chunks)]:
        choice = chunk.choices[0]  # what clients do on every chunk; must not raise
        assert choice.index in (0, 1)
    for chunk in usage_chunks:
        assert chunk.choices == [] and chunk.usage is not None and chunk.usage.total_tokens > 0
    assert all(chunk.usage is None for chunk in chunks[: len(chunks) - len(usage_chunks)])
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["stop" if kind == "plain" else "tool_calls"] * body.get("n", 1)
    extras = [(chunk.model_extra or {}).get("generation_context") for chunk in chunks]
    if context:
        assert extras[:-1] == [None] * (len(chunks) - 1)
        assert extras[-1]["generated_usage"]
    else:
        assert extras == [None] * len(chunks)


@pytest.mark.parametrize("context", [True, False], ids=["context-on", "context-off"])
def test_the_gateway_api_streams_the_same_chunks_as_v1(
    projects: dict[bool, Project], base_url: str, context: bool
) -> None:
    project = projects[context]
    text = f"stream the endpoint {secrets.token_hex(6)}"

    endpoint = _sse(
        f"{base_url}/api/{project.id}/{SLUG}", {"message": text, "stream": True}, project.headers
    )
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": text}], "stream": True}
    v1 = _sse(f"{base_url}{CHAT}", body, project.headers)

    chunks = _assert_openais_sequence(endpoint, include_usage=False)
    assert endpoint == v1
    assert ("generation_context" in chunks[-1]) is context
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
