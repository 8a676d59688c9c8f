"""One conformance suite for every provider adapter, replaying recorded payloads.

Each adapter is a ``Case``: how to build it over an ``httpx`` transport, where
its fixtures live (``tests/fixtures/<provider>/<case>.json|.sse``), the URLs
and key header it must use, and which capabilities it claims. Adding a
provider is one fixture set plus one entry in ``CASES``.

Every provider's fixtures record the same conversations in that provider's
documented wire format, so one expectation serves all: whatever the provider
said, the client must receive the answer that ``tests/fixtures/openai`` holds
in OpenAI's own shape (same text, tool calls, finish reason and usage; ids and
timestamps are the provider's). Adapters that pass OpenAI bytes through
(``passthrough``) must also forward them unchanged. The request every test
sends (``REQUEST``) must reach each provider exactly as its
``request_chat.json`` records.

The provider is replaced by ``httpx.MockTransport``; SSE bodies are served in
small irregular pieces so events split across network reads.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import (
    ContextLengthExceeded,
    GatewayError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from router.providers import anthropic, gemini, openai_compat
from router.providers.base import (
    EmbeddingsAdapter,
    ProviderAdapter,
    ProviderRequest,
    StreamChunk,
    Usage,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CANONICAL = FIXTURES / "openai"

#: The chat request of every test: every message role, an image, a tool round trip.
REQUEST: dict[str, Any] = {
    "model": "public-name",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image, and how warm is Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "max_tokens": 256,
}


@dataclass(frozen=True)
class Case:
    """An adapter under test: where it must send things, and the capabilities it claims."""

    provider: str
    build: Callable[[httpx.AsyncBaseTransport], ProviderAdapter]
    chat_url: str
    stream_url: str
    #: Header carrying the key, and how the key is written in it.
    key_header: str
    models: tuple[str, ...]
    #: What a stream adds to the recorded request payload.
    stream_fields: dict[str, Any] = field(default_factory=dict)
    #: Bodies and chunks are the provider's own OpenAI-shaped bytes.
    passthrough: bool = False
    streaming: bool = True
    tools: bool = True
    #: Prompt-cache writes its fixtures report (Anthropic's cache_creation_input_tokens).
    cache_writes: int = 0
    parallel_tool_calls: bool = True
    text_and_tool_call_in_one_chunk: bool = True
    #: The provider may attach usage to a chunk that also has choices.
    usage_on_choice_chunk: bool = False
    embeddings: bool = False

    def fixture(self, name: str) -> Path:
        return FIXTURES / self.provider / name


def _entry(kind: Any, base_url: str, **extra: Any) -> ProviderEntry:
    return ProviderEntry(kind=kind, base_url=base_url, **extra)


def _openai(transport: httpx.AsyncBaseTransport) -> ProviderAdapter:
    entry = _entry("openai", "https://provider.test/v1")
    return openai_compat.build("openai", entry, "sk-configured", transport=transport)


def _azure(transport: httpx.AsyncBaseTransport) -> ProviderAdapter:
    entry = _entry("azure_openai", "https://res.openai.azure.com", api_version="2024-10-21")
    return openai_compat.build_azure("azure", entry, "sk-configured", transport=transport)


def _anthropic(transport: httpx.AsyncBaseTransport) -> ProviderAdapter:
    entry = _entry("anthropic", "https://provider.test/v1")
    return anthropic.build("anthropic", entry, "sk-configured", transport=transport)


def _gemini(transport: httpx.AsyncBaseTransport) -> ProviderAdapter:
    entry = _entry("gemini", "https://provider.test/v1beta")
    return gemini.build("gemini", entry, "sk-configured", transport=transport)


_OPENAI_STREAM = {"stream": True, "stream_options": {"include_usage": True}}
_AZURE_CHAT = "https://res.openai.azure.com/openai/deployments/provider-model/chat/completions"

CASES = [
    Case(
        "openai",
        _openai,
        chat_url="https://provider.test/v1/chat/completions",
        stream_url="https://provider.test/v1/chat/completions",
        key_header="authorization",
        models=("gpt-4o", "text-embedding-3-small"),
        stream_fields=_OPENAI_STREAM,
        passthrough=True,
        usage_on_choice_chunk=True,
        embeddings=True,
    ),
    Case(
        "azure_openai",
        _azure,
        chat_url=f"{_AZURE_CHAT}?api-version=2024-10-21",
        stream_url=f"{_AZURE_CHAT}?api-version=2024-10-21",
        key_header="api-key",
        models=("gpt-4o", "text-embedding-3-small"),
        stream_fields=_OPENAI_STREAM,
        passthrough=True,
        usage_on_choice_chunk=True,
        embeddings=True,
    ),
    Case(
        "anthropic",
        _anthropic,
        chat_url="https://provider.test/v1/messages",
        stream_url="https://provider.test/v1/messages",
        key_header="x-api-key",
        models=("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"),
        stream_fields={"stream": True},
        text_and_tool_call_in_one_chunk=False,  # text and tool use are separate content blocks
        cache_writes=3,
    ),
    Case(
        "gemini",
        _gemini,
        chat_url="https://provider.test/v1beta/models/provider-model:generateContent",
        stream_url="https://provider.test/v1beta/models/provider-model:streamGenerateContent?alt=sse",
        key_header="x-goog-api-key",
        models=("gemini-2.5-flash", "gemini-embedding-001"),
    ),
]


class _Body(httpx.AsyncByteStream):
    """Serves bytes in pieces of 1, 7, 3, 13, ... bytes; remembers being closed."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sizes = itertools.cycle((1, 7, 3, 13, 64, 5))
        at = 0
        while at < len(self._data):
            size = next(sizes)
            yield self._data[at : at + size]
            at += size

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Replay:
    """A fake provider that answers every request with one fixture and records requests."""

    fixture: Path
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[_Body] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = _Body(self.fixture.read_bytes())
        self.bodies.append(body)
        kind = "text/event-stream" if self.fixture.suffix == ".sse" else "application/json"
        return httpx.Response(
            self.status, headers={"content-type": kind, **self.headers}, stream=body
        )

    @property
    def payload(self) -> dict[str, Any]:
        return orjson.loads(self.requests[-1].content)


@pytest.fixture(params=CASES, ids=lambda case: case.provider)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def _chat(**extra: Any) -> ProviderRequest:
    return ProviderRequest(
        "chat.completions", {**REQUEST, **extra}, provider_model="provider-model"
    )


async def _collect(adapter: ProviderAdapter, req: ProviderRequest) -> list[StreamChunk]:
    return [chunk async for chunk in adapter.stream(req, deadline=None)]


def _sse_payloads(path: Path) -> list[bytes]:
    lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    return [ln[6:] for ln in lines if ln.startswith(b"data: ") and ln != b"data: [DONE]"]


# -- what the client sees, independent of ids and formatting --------------------


def _answer(body: bytes) -> dict[str, Any]:
    """A chat.completion reduced to what must match across providers."""
    obj = orjson.loads(body)
    assert obj["object"] == "chat.completion"
    [choice] = obj["choices"]
    message = choice["message"]
    assert message["role"] == "assistant"
    calls = message.get("tool_calls") or []
    assert all(call["id"] and call["type"] == "function" for call in calls)
    return {
        "content": message["content"],
        "tool_calls": [
            (call["function"]["name"], orjson.loads(call["function"]["arguments"]))
            for call in calls
        ],
        "finish_reason": choice["finish_reason"],
    }


def _assembled(payloads: list[bytes]) -> dict[str, Any]:
    """Chunks assembled the way an SDK does, reduced like ``_answer``."""
    content = ""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for payload in payloads:
        obj = orjson.loads(payload)
        for choice in obj["choices"]:
            assert obj["object"] == "chat.completion.chunk" and choice["index"] == 0
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.get("id", "")
                slot["name"] += call.get("function", {}).get("name", "")
                slot["arguments"] += call.get("function", {}).get("arguments", "")
            finish = choice["finish_reason"] or finish
    assert all(call["id"] for call in calls.values())
    return {
        "content": content,
        "tool_calls": [
            (calls[i]["name"], orjson.loads(calls[i]["arguments"])) for i in sorted(calls)
        ],
        "finish_reason": finish,
    }


def _forwarded(chunks: list[StreamChunk]) -> list[bytes]:
    return [chunk.data for chunk in chunks if chunk.data is not None]


def _steps(payloads: list[bytes]) -> list[str]:
    """What each chunk gives the client, runs of one kind merged: the chunk sequence of a
    stream independent of how finely a provider splits its text and arguments.

    ``role``, ``text``, ``tool`` (a delta's fields, in that order), ``finish:<reason>``,
    and ``usage`` for the ``choices: []`` chunk.
    """
    steps: list[str] = []
    for payload in payloads:
        obj = orjson.loads(payload)
        kinds: list[str] = [] if obj["choices"] else ["usage"]
        for choice in obj["choices"]:
            delta = choice["delta"]
            kinds += ["role"] if "role" in delta else []
            kinds += ["text"] if delta.get("content") or delta.get("refusal") else []
            kinds += ["tool"] if delta.get("tool_calls") else []
            kinds += [f"finish:{choice['finish_reason']}"] if choice["finish_reason"] else []
        steps += [kind for kind in kinds if not steps or steps[-1] != kind]
    return steps


def _as_openai_sends(payloads: list[bytes], *, include_usage: bool) -> list[dict[str, Any]]:
    """A passthrough provider's chunks as OpenAI sends them to a client that asked
    ``include_usage`` or not: a chunk with neither choices nor usage (Azure's
    ``prompt_filter_results``) never, the usage chunk and the ``usage`` key only if asked."""
    sent: list[dict[str, Any]] = []
    for payload in payloads:
        obj = orjson.loads(payload)
        if not obj.get("choices"):
            if include_usage and obj.get("usage"):
                sent.append(obj)
            continue
        if not include_usage:
            obj.pop("usage", None)
        sent.append(obj)
    return sent


def _usage_of(wire: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=wire["prompt_tokens"],
        completion_tokens=wire["completion_tokens"],
        total_tokens=wire["total_tokens"],
        cached_tokens=(wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
        cache_write_tokens=(wire.get("prompt_tokens_details") or {}).get("cache_write_tokens") or 0,
    )


def _without_reasoning(usage: Usage | None) -> Usage | None:
    # Reasoning tokens are part of completion tokens; only some providers report them.
    return None if usage is None else replace(usage, reasoning_tokens=0)


# -- the request ---------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True])
async def test_request_reaches_the_provider_as_recorded(case: Case, streaming: bool) -> None:
    if streaming and not case.streaming:
        pytest.skip("adapter does not stream")
    replay = Replay(case.fixture("stream_plain.sse" if streaming else "chat_plain.json"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        if streaming:
            await _collect(adapter, _chat(stream=True, stream_options={"include_usage": True}))
        else:
            await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    expected = orjson.loads(case.fixture("request_chat.json").read_bytes())
    if streaming:
        expected |= case.stream_fields
    assert replay.payload == expected
    [sent] = replay.requests
    assert sent.method == "POST"
    assert str(sent.url) == (case.stream_url if streaming else case.chat_url)
    assert sent.headers["content-type"] == "application/json"


@pytest.mark.timeout(10)
async def test_configured_key_and_byok_override(case: Case) -> None:
    replay = Replay(case.fixture("chat_plain.json"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        await adapter.complete(_chat(), deadline=None)
        byok = ProviderRequest(
            "chat.completions", REQUEST, provider_model="m", provider_key="sk-caller"
        )
        await adapter.complete(byok, deadline=None)
    finally:
        await adapter.aclose()
    first, second = (r.headers.get(case.key_header, "") for r in replay.requests)
    assert first.endswith("sk-configured")
    assert second.endswith("sk-caller") and "sk-configured" not in second
    for request in replay.requests:
        assert "sk-caller" not in str(request.url) and "sk-configured" not in str(request.url)


# -- non-streaming ---------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fixture", "needs"),
    [
        ("chat_plain.json", ""),
        ("chat_tool_call.json", "tools"),
        ("chat_parallel_tool_calls.json", "parallel_tool_calls"),
    ],
)
async def test_complete_answers_in_openai_shape(case: Case, fixture: str, needs: str) -> None:
    if needs and not getattr(case, needs):
        pytest.skip(f"adapter has no {needs}")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture(fixture))))
    try:
        result = await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    canonical = (CANONICAL / fixture).read_bytes()
    assert _answer(result.body) == _answer(canonical)
    if case.passthrough:
        assert result.body == case.fixture(fixture).read_bytes()
    wire_usage = orjson.loads(result.body)["usage"]
    # Prompt-cache writes ride as an extension OpenAI's own answer does not have.
    openai_usage = replace(_usage_of(wire_usage), cache_write_tokens=0)
    assert openai_usage == _usage_of(orjson.loads(canonical)["usage"])
    assert _without_reasoning(result.usage) == _usage_of(wire_usage)


@pytest.mark.timeout(10)
async def test_complete_reads_cached_tokens(case: Case) -> None:
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("chat_plain.json"))))
    try:
        result = await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    assert result.usage == Usage(
        prompt_tokens=19,
        completion_tokens=10,
        total_tokens=29,
        cached_tokens=4,
        cache_write_tokens=case.cache_writes,
    )


# -- streaming -------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_plain(case: Case, include_usage: bool) -> None:
    if not case.streaming:
        pytest.skip("adapter does not stream")
    fixture = case.fixture("stream_plain.sse")
    adapter = case.build(httpx.MockTransport(Replay(fixture)))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    try:
        chunks = await _collect(adapter, _chat(stream=True, **options))
    finally:
        await adapter.aclose()
    forwarded = _forwarded(chunks)
    assert _assembled(forwarded) == _assembled(_sse_payloads(CANONICAL / "stream_plain.sse"))
    if case.passthrough:
        expected = _as_openai_sends(_sse_payloads(fixture), include_usage=include_usage)
        assert [orjson.loads(data) for data in forwarded] == expected
        if include_usage:  # then every forwarded chunk is the provider's bytes
            assert all(data in fixture.read_bytes() for data in forwarded)
    usages = [c.usage for c in chunks if c.usage is not None]
    assert usages == [Usage(prompt_tokens=19, completion_tokens=3, total_tokens=22)]
    last = orjson.loads(forwarded[-1])
    assert (last["choices"] == [] and last["usage"]["total_tokens"] == 22) is include_usage


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fixture", "needs"),
    [
        ("stream_tool_call.sse", "tools"),
        ("stream_parallel_tool_calls.sse", "parallel_tool_calls"),
        ("stream_text_and_tool_call.sse", "tools"),
    ],
)
async def test_stream_tool_calls(case: Case, fixture: str, needs: str) -> None:
    if not (case.streaming and getattr(case, needs)):
        pytest.skip(f"adapter does not stream {needs}")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture(fixture))))
    try:
        chunks = await _collect(adapter, _chat(stream=True))
    finally:
        await adapter.aclose()
    forwarded = _forwarded(chunks)
    assert _assembled(forwarded) == _assembled(_sse_payloads(CANONICAL / fixture))
    if case.passthrough:
        expected = _as_openai_sends(_sse_payloads(case.fixture(fixture)), include_usage=False)
        assert [orjson.loads(data) for data in forwarded] == expected
    assert sum(c.usage is not None for c in chunks) == 1


@pytest.mark.timeout(10)
async def test_stream_text_and_tool_call_in_one_chunk(case: Case) -> None:
    if not (case.streaming and case.tools and case.text_and_tool_call_in_one_chunk):
        pytest.skip("adapter does not stream text and a tool call in one chunk")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("stream_text_and_tool_call.sse"))))
    try:
        chunks = await _collect(adapter, _chat(stream=True))
    finally:
        await adapter.aclose()
    deltas = [orjson.loads(data)["choices"][0]["delta"] for data in _forwarded(chunks)]
    delta = next(delta for delta in deltas if delta.get("tool_calls"))
    assert delta["content"] == "Let me check."
    assert delta["tool_calls"][0]["function"]["name"] == "lookup"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_usage_with_cached_tokens_in_a_final_chunk(
    case: Case, include_usage: bool
) -> None:
    if not case.streaming:
        pytest.skip("adapter does not stream")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("stream_usage_cached.sse"))))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    try:
        chunks = await _collect(adapter, _chat(stream=True, **options))
    finally:
        await adapter.aclose()
    *_, last = chunks
    assert _without_reasoning(last.usage) == Usage(
        prompt_tokens=19,
        completion_tokens=10,
        total_tokens=29,
        cached_tokens=4,
        cache_write_tokens=case.cache_writes,
    )
    assert all(chunk.usage is None for chunk in chunks[:-1])
    if not include_usage:
        assert last.data is None
        return
    assert last.data is not None
    obj = orjson.loads(last.data)
    assert obj["choices"] == []
    assert obj["usage"]["prompt_tokens_details"]["cached_tokens"] == 4


@pytest.mark.timeout(10)
async def test_stream_strips_usage_from_a_chunk_with_choices(case: Case) -> None:
    if not (case.streaming and case.usage_on_choice_chunk):
        pytest.skip("provider reports usage in a chunk of its own")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("stream_usage_with_choices.sse"))))
    try:
        chunks = await _collect(adapter, _chat(stream=True))
    finally:
        await adapter.aclose()
    last = chunks[-1]
    assert last.usage == Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6)
    assert last.data is not None
    obj = orjson.loads(last.data)
    assert "usage" not in obj and obj["choices"][0]["finish_reason"] == "stop"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    ("fixture", "needs"),
    [
        ("stream_plain.sse", ""),
        ("stream_usage_cached.sse", ""),
        ("stream_tool_call.sse", "tools"),
        ("stream_parallel_tool_calls.sse", "parallel_tool_calls"),
        ("stream_text_and_tool_call.sse", "tools"),
    ],
)
async def test_stream_sends_the_chunks_openai_sends(
    case: Case, fixture: str, needs: str, include_usage: bool
) -> None:
    """The client's chunk sequence is OpenAI's for its request, whatever the provider sent.

    Every chunk has a choice, except one last ``choices: []`` usage chunk if and only
    if the client asked for ``include_usage`` (and then every other chunk has
    ``"usage": null``; otherwise no chunk has a ``usage`` key); a choice starts with
    its role and finishes in a chunk of its own with an empty delta; ``final`` marks
    exactly the finishing chunks and the usage chunk (the ones the router may hold).
    """
    if not (case.streaming and (not needs or getattr(case, needs))):
        pytest.skip(f"adapter does not stream {needs or 'chat'}")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture(fixture))))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    try:
        chunks = await _collect(adapter, _chat(stream=True, **options))
    finally:
        await adapter.aclose()
    forwarded = [c for c in chunks if c.data is not None]
    objs = [orjson.loads(c.data or b"") for c in forwarded]

    canonical = _steps(_sse_payloads(CANONICAL / fixture))
    assert _steps([c.data or b"" for c in forwarded]) == (
        canonical if include_usage else canonical[:-1]
    )
    assert [obj["choices"] == [] for obj in objs] == [False] * (len(objs) - 1) + [include_usage]
    if include_usage:
        assert objs[-1]["usage"]["total_tokens"] > 0
        assert all("usage" in obj and obj["usage"] is None for obj in objs[:-1])
    else:
        assert not any("usage" in obj for obj in objs)
    started: set[int] = set()
    for obj in objs:
        for choice in obj["choices"]:
            if choice["index"] not in started:
                started.add(choice["index"])
                assert choice["delta"]["role"] == "assistant"
            if choice["finish_reason"] is not None:
                assert choice["delta"] == {}
    assert [c.final for c in forwarded] == [
        obj["choices"] == [] or any(ch["finish_reason"] for ch in obj["choices"]) for obj in objs
    ]
    unasked = [c for c in chunks if c.data is None and c.usage is not None]
    assert all(c.final for c in unasked) and len(unasked) == (not include_usage)


@pytest.mark.timeout(10)
async def test_stream_mid_stream_error(case: Case) -> None:
    """The fixture delivers the role and some text, then the provider's error event."""
    if not case.streaming:
        pytest.skip("adapter does not stream")
    replay = Replay(case.fixture("stream_mid_error.sse"))
    adapter = case.build(httpx.MockTransport(replay))
    seen: list[StreamChunk] = []
    try:
        with pytest.raises(ProviderUnavailable, match="mid-stream"):
            async for chunk in adapter.stream(_chat(stream=True), deadline=None):
                seen.append(chunk)
    finally:
        await adapter.aclose()
    assert _steps(_forwarded(seen)) == ["role", "text"]
    assert _assembled(_forwarded(seen))["content"] == "Partial"
    assert replay.bodies[0].closed


@pytest.mark.timeout(10)
async def test_stream_closed_when_consumer_stops(case: Case) -> None:
    if not case.streaming:
        pytest.skip("adapter does not stream")
    replay = Replay(case.fixture("stream_plain.sse"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        chunks = adapter.stream(_chat(stream=True), deadline=None)
        await anext(chunks)
        assert not replay.bodies[0].closed
        await chunks.aclose()
        assert replay.bodies[0].closed
    finally:
        await adapter.aclose()


# -- errors ----------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("status", "fixture", "headers", "error", "retryable", "http_status"),
    [
        (500, "error_500.json", {}, ProviderUnavailable, True, 502),
        (429, "error_429.json", {"retry-after": "2"}, ProviderUnavailable, True, 429),
        (400, "error_400.json", {}, ProviderRejected, False, 400),
    ],
)
async def test_error_mapping(
    case: Case,
    streaming: bool,
    status: int,
    fixture: str,
    headers: dict[str, str],
    error: type[GatewayError],
    retryable: bool,
    http_status: int,
) -> None:
    if streaming and not case.streaming:
        pytest.skip("adapter does not stream")
    replay = Replay(case.fixture(fixture), status=status, headers=headers)
    adapter = case.build(httpx.MockTransport(replay))
    try:
        with pytest.raises(error) as caught:
            if streaming:
                await _collect(adapter, _chat(stream=True))
            else:
                await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    err = caught.value
    assert err.retryable is retryable
    assert err.http_status == http_status
    said = orjson.loads(case.fixture(fixture).read_bytes())["error"]
    if status == 429:
        assert isinstance(err, ProviderUnavailable) and err.retry_after == 2.0
    if status == 400:
        assert err.message == said["message"]
        assert err.param == said.get("param")
    else:
        assert said["message"] in err.message
    if streaming:
        assert replay.bodies[0].closed


#: What the client is told for each provider's recorded context-length refusal: OpenAI's
#: own message as it came, the others' counts restated in OpenAI's words.
OVERFLOW_MESSAGES = {
    "openai": (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 200017 tokens. Please reduce the length of the messages."
    ),
    "anthropic": (
        "This model's maximum context length is 200000 tokens. However, your messages "
        "resulted in 208310 tokens. Please reduce the length of the messages."
    ),
    "gemini": (
        "This model's maximum context length is 1048576 tokens. However, your messages "
        "resulted in 1048577 tokens. Please reduce the length of the messages."
    ),
}
OVERFLOW_MESSAGES["azure_openai"] = OVERFLOW_MESSAGES["openai"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True])
async def test_context_length_refusal_is_openais_400(case: Case, streaming: bool) -> None:
    """A provider's own "prompt too long" is the 400 ``context_length_exceeded`` the edge
    answers for a prompt it counts too long itself, and is not retryable."""
    if streaming and not case.streaming:
        pytest.skip("adapter does not stream")
    replay = Replay(case.fixture("error_context_length.json"), status=400)
    adapter = case.build(httpx.MockTransport(replay))
    try:
        with pytest.raises(ContextLengthExceeded) as caught:
            if streaming:
                await _collect(adapter, _chat(stream=True))
            else:
                await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    err = caught.value
    assert (err.http_status, err.code, err.param, err.error_type, err.retryable) == (
        400,
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
        False,
    )
    assert err.message == OVERFLOW_MESSAGES[case.provider]
    assert len(replay.requests) == 1
    if streaming:
        assert replay.bodies[0].closed


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("connection refused"), ProviderUnavailable),
        (httpx.ConnectTimeout("connect timed out"), ProviderUnavailable),
        (httpx.RemoteProtocolError("peer closed connection"), ProviderUnavailable),
        (httpx.ReadTimeout("read timed out"), ProviderTimeout),
        (httpx.PoolTimeout("pool exhausted"), ProviderTimeout),
    ],
)
async def test_transport_errors(
    case: Case, raised: Exception, expected: type[GatewayError]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    adapter = case.build(httpx.MockTransport(fail))
    try:
        with pytest.raises(expected) as caught:
            await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    assert caught.value.__cause__ is raised
    assert caught.value.retryable


# -- embeddings and models -------------------------------------------------------


@pytest.mark.timeout(10)
async def test_embeddings(case: Case) -> None:
    replay = Replay(case.fixture("embeddings.json"))
    adapter = case.build(httpx.MockTransport(replay))
    if not case.embeddings:
        assert not isinstance(adapter, EmbeddingsAdapter)
        await adapter.aclose()
        return
    assert isinstance(adapter, EmbeddingsAdapter)
    req = ProviderRequest(
        "embeddings", {"model": "e", "input": ["a b", "c d e f g h"]}, provider_model="emb-1"
    )
    try:
        result = await adapter.embed(req, deadline=None)
    finally:
        await adapter.aclose()
    assert result.body == case.fixture("embeddings.json").read_bytes()
    assert result.usage == Usage(prompt_tokens=8, total_tokens=8)
    assert replay.payload == {"model": "emb-1", "input": ["a b", "c d e f g h"]}
    assert replay.requests[0].url.path.endswith("/embeddings")


@pytest.mark.timeout(10)
async def test_list_models(case: Case) -> None:
    replay = Replay(case.fixture("models.json"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        assert await adapter.list_models() == case.models
    finally:
        await adapter.aclose()
    assert replay.requests[0].headers[case.key_header].endswith("sk-configured")
