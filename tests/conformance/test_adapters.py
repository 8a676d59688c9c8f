"""One conformance suite for every provider adapter, replaying recorded payloads.

Each adapter is a ``Case``: how to build it over an ``httpx`` transport, where
its fixtures live (``tests/fixtures/<provider>/<case>.json|.sse``) and which
capabilities it claims. Adding a provider is one fixture set plus one entry
in ``CASES``. The provider is replaced by ``httpx.MockTransport``; SSE bodies
are served in small irregular pieces so events split across network reads.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import (
    GatewayError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from router.providers import openai_compat
from router.providers.base import (
    EmbeddingsAdapter,
    ProviderAdapter,
    ProviderRequest,
    StreamChunk,
    Usage,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class Case:
    """An adapter under test and the capabilities it claims."""

    provider: str
    build: Callable[[httpx.AsyncBaseTransport], ProviderAdapter]
    streaming: bool = True
    tools: bool = True
    embeddings: bool = True

    def fixture(self, name: str) -> Path:
        return FIXTURES / self.provider / name


def _openai(transport: httpx.AsyncBaseTransport) -> ProviderAdapter:
    entry = ProviderEntry(kind="openai", base_url="https://provider.test/v1")
    return openai_compat.build("openai", entry, "sk-configured", transport=transport)


CASES = [Case("openai", _openai)]


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
    body = {"model": "public-name", "messages": [{"role": "user", "content": "Hi"}], **extra}
    return ProviderRequest("chat.completions", body, provider_model="provider-model")


async def _collect(adapter: ProviderAdapter, req: ProviderRequest) -> list[StreamChunk]:
    return [chunk async for chunk in adapter.stream(req, deadline=None)]


def _sse_payloads(path: Path) -> list[bytes]:
    lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    return [ln[6:] for ln in lines if ln.startswith(b"data: ") and ln != b"data: [DONE]"]


def _tool_calls(chunks: list[StreamChunk]) -> dict[int, dict[str, str]]:
    """Assemble streamed tool-call deltas the way an SDK does."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        assert chunk.data is not None
        for choice in orjson.loads(chunk.data)["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"name": "", "arguments": ""})
                slot["name"] += call.get("function", {}).get("name", "")
                slot["arguments"] += call.get("function", {}).get("arguments", "")
    return calls


# -- non-streaming ---------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fixture", "needs_tools"),
    [
        ("chat_plain.json", False),
        ("chat_tool_call.json", True),
        ("chat_parallel_tool_calls.json", True),
    ],
)
async def test_complete_passes_the_body_through(
    case: Case, fixture: str, needs_tools: bool
) -> None:
    if needs_tools and not case.tools:
        pytest.skip("adapter has no tool calls")
    replay = Replay(case.fixture(fixture))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        result = await adapter.complete(_chat(temperature=0.2, stream=False), deadline=None)
    finally:
        await adapter.aclose()
    assert result.body == case.fixture(fixture).read_bytes()
    wire_usage = orjson.loads(result.body)["usage"]
    assert result.usage is not None
    assert result.usage.prompt_tokens == wire_usage["prompt_tokens"]
    assert result.usage.completion_tokens == wire_usage["completion_tokens"]
    sent = replay.payload
    assert sent["model"] == "provider-model"
    assert sent["temperature"] == 0.2
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert "stream" not in sent and "stream_options" not in sent


@pytest.mark.timeout(10)
async def test_complete_reads_cached_tokens(case: Case) -> None:
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("chat_plain.json"))))
    try:
        result = await adapter.complete(_chat(), deadline=None)
    finally:
        await adapter.aclose()
    assert result.usage == Usage(
        prompt_tokens=19, completion_tokens=10, total_tokens=29, cached_tokens=4
    )


@pytest.mark.timeout(10)
async def test_configured_key_and_byok_override(case: Case) -> None:
    replay = Replay(case.fixture("chat_plain.json"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        await adapter.complete(_chat(), deadline=None)
        byok = ProviderRequest(
            "chat.completions", {"messages": []}, provider_model="m", provider_key="sk-caller"
        )
        await adapter.complete(byok, deadline=None)
    finally:
        await adapter.aclose()
    first, second = (r.headers.get("authorization", "") for r in replay.requests)
    assert first.endswith("sk-configured")
    assert second.endswith("sk-caller") and "sk-configured" not in second


# -- streaming -------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_plain(case: Case, include_usage: bool) -> None:
    if not case.streaming:
        pytest.skip("adapter does not stream")
    fixture = case.fixture("stream_plain.sse")
    replay = Replay(fixture)
    adapter = case.build(httpx.MockTransport(replay))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    try:
        chunks = await _collect(adapter, _chat(stream=True, **options))
    finally:
        await adapter.aclose()
    expected = _sse_payloads(fixture)
    if not include_usage:
        expected = expected[:-1]  # the usage-only chunk is not forwarded
    assert [c.data for c in chunks if c.data is not None] == expected
    usages = [c.usage for c in chunks if c.usage is not None]
    assert usages == [Usage(prompt_tokens=19, completion_tokens=3, total_tokens=22)]
    sent = replay.payload
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "provider-model"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "stream_tool_call.sse",
            {0: {"name": "get_current_weather", "arguments": '{"location": "Boston, MA"}'}},
        ),
        (
            "stream_parallel_tool_calls.sse",
            {
                0: {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                1: {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
            },
        ),
        ("stream_text_and_tool_call.sse", {0: {"name": "lookup", "arguments": '{"q": "x"}'}}),
    ],
)
async def test_stream_tool_calls(case: Case, fixture: str, expected: dict[int, Any]) -> None:
    if not (case.streaming and case.tools):
        pytest.skip("adapter does not stream tool calls")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture(fixture))))
    try:
        chunks = await _collect(adapter, _chat(stream=True, tools=[{"type": "function"}]))
    finally:
        await adapter.aclose()
    forwarded = [c for c in chunks if c.data is not None]
    assert [c.data for c in forwarded] == _sse_payloads(case.fixture(fixture))[:-1]
    assert _tool_calls(forwarded) == expected
    assert sum(c.usage is not None for c in chunks) == 1


@pytest.mark.timeout(10)
async def test_stream_text_and_tool_call_in_one_chunk(case: Case) -> None:
    if not (case.streaming and case.tools):
        pytest.skip("adapter does not stream tool calls")
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("stream_text_and_tool_call.sse"))))
    try:
        chunks = await _collect(adapter, _chat(stream=True))
    finally:
        await adapter.aclose()
    assert chunks[0].data is not None
    delta = orjson.loads(chunks[0].data)["choices"][0]["delta"]
    assert delta["content"] == "Let me check."
    assert delta["tool_calls"][0]["function"]["name"] == "lookup"


@pytest.mark.timeout(10)
async def test_stream_strips_usage_from_a_chunk_with_choices(case: Case) -> None:
    if not case.streaming:
        pytest.skip("adapter does not stream")
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
async def test_stream_mid_stream_error(case: Case) -> None:
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
    assert len(seen) == 2
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
        (429, "error_429.json", {"retry-after": "2"}, ProviderUnavailable, True, 502),
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
    if status == 429:
        assert isinstance(err, ProviderUnavailable) and err.retry_after == 2.0
    if status == 400:
        assert err.message.startswith("Invalid value for 'temperature'")
        assert err.param == "temperature"
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
    adapter = case.build(httpx.MockTransport(Replay(case.fixture("models.json"))))
    try:
        assert await adapter.list_models() == ("gpt-4o", "text-embedding-3-small")
    finally:
        await adapter.aclose()
