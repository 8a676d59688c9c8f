"""The servicer in-process: a real grpc.aio server and client; only the provider is faked.

Provider ``primary`` answers 500 to everything; ``backup`` answers from the
recorded OpenAI fixtures (a user message "break" makes its stream fail after
one chunk). Usage goes to an in-memory recorder with the ``UsageSink`` shape.
The stream tests at the end script the upstream body read by read
(``Upstream``) to see how chunks are batched into messages and how a stream
ends early.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.catalog import Catalog, ProviderEntry
from gateway_common.errors import from_detail
from gateway_common.grpc import ContextInterceptor
from gateway_common.tokens import estimate
from router.catalog import LiveCatalog
from router.delivered import delivered_usage
from router.failover import Failover, RouteInfo
from router.handlers import ERROR_DETAIL_KEY, RouterServicer
from router.metrics import RouterMetrics
from router.providers.base import Operation, ProviderAdapter, Usage
from router.providers.registry import build_adapters
from router.service import RouterService
from router.usage import Payer, Status

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "openai"


@dataclass
class Recorder:
    """In-memory ``UsageSink``: remembers what would have been published."""

    calls: list[tuple[Payer, Operation, RouteInfo, Usage | None, Status]] = field(
        default_factory=list
    )
    recorded: asyncio.Event = field(default_factory=asyncio.Event)

    async def record(
        self,
        payer: Payer,
        operation: Operation,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> None:
        self.calls.append((payer, operation, route, usage, status))
        self.recorded.set()


def _provider(request: httpx.Request) -> httpx.Response:
    if request.url.host == "primary.test":
        return httpx.Response(500, content=(FIXTURES / "error_500.json").read_bytes())
    body = orjson.loads(request.content)
    if request.url.path.endswith("/embeddings"):
        return httpx.Response(200, content=(FIXTURES / "embeddings.json").read_bytes())
    if not body.get("stream"):
        return httpx.Response(200, content=(FIXTURES / "chat_plain.json").read_bytes())
    broken = body["messages"][-1]["content"] == "break"
    fixture = "stream_mid_error.sse" if broken else "stream_plain.sse"
    return httpx.Response(200, content=(FIXTURES / fixture).read_bytes())


@dataclass
class Harness:
    stub: router_pb2_grpc.RouterStub
    recorder: Recorder


@pytest.fixture
async def harness(catalog_file: Path, metrics: RouterMetrics) -> AsyncIterator[Harness]:
    transport = httpx.MockTransport(_provider)

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {}, reuse=reuse, transport=transport)

    live = LiveCatalog(catalog_file, build, metrics)
    await live.load()
    recorder = Recorder()
    server = grpc.aio.server(interceptors=[ContextInterceptor()])
    service = RouterService(live, Failover(metrics), recorder)
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(router_pb2_grpc.RouterStub(channel), recorder)
    finally:
        await channel.close()
        await server.stop(grace=None)
        await live.aclose()


def _request(model: str, **body: Any) -> router_pb2.CompleteRequest:
    payload = {"model": model, "messages": [{"role": "user", "content": "Hi"}], **body}
    return router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=model,
        body=orjson.dumps(payload),
        request_id="req-1",
        project_id="proj-1",
        api_key_id="key-1",
    )


def _detail(err: grpc.aio.AioRpcError) -> types_pb2.ErrorDetail:
    trailers = dict(err.trailing_metadata() or ())
    return types_pb2.ErrorDetail.FromString(trailers[ERROR_DETAIL_KEY])


@pytest.mark.timeout(10)
async def test_unary(harness: Harness) -> None:
    reply = await harness.stub.Complete(_request("@backup/chat-model"), timeout=5)
    assert reply.body == (FIXTURES / "chat_plain.json").read_bytes()
    assert (reply.route.provider, reply.route.attempts, reply.route.model) == (
        "backup",
        1,
        "chat-model",
    )
    assert reply.route.provider_model == "backup-chat"
    assert (reply.usage.prompt_tokens, reply.usage.cached_tokens) == (19, 4)
    [(payer, operation, route, usage, status)] = harness.recorder.calls
    assert payer == Payer("req-1", "proj-1", "key-1", byok=False)
    assert (operation, route.deployment, status) == ("chat.completions", "backup/backup-chat", "ok")
    assert usage is not None and usage.completion_tokens == 10


@pytest.mark.timeout(10)
async def test_unary_fails_over_from_a_500(harness: Harness) -> None:
    reply = await harness.stub.Complete(_request("chat-alias"), timeout=5)
    assert (reply.route.provider, reply.route.attempts) == ("backup", 2)
    assert len(harness.recorder.calls) == 1  # only the call that returned usage


@pytest.mark.timeout(10)
async def test_embeddings(harness: Harness) -> None:
    request = router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_EMBEDDINGS,
        model="embed-model",
        body=b'{"model":"embed-model","input":"hello"}',
        provider_key="sk-caller",
    )
    reply = await harness.stub.Complete(request, timeout=5, metadata=(("x-request-id", "req-md"),))
    assert reply.usage.prompt_tokens == 8
    [(payer, operation, *_)] = harness.recorder.calls
    assert (payer.request_id, payer.byok, operation) == ("req-md", True, "embeddings")


def _chunks(messages: Sequence[router_pb2.StreamEvent]) -> list[bytes]:
    """Every chunk the messages carry, in order."""
    return [c for m in messages if m.WhichOneof("event") == "chunks" for c in m.chunks.chunks]


@pytest.mark.timeout(10)
async def test_stream_fails_over_then_streams(harness: Harness) -> None:
    events = [
        e async for e in harness.stub.StreamComplete(_request("chat-model", stream=True), timeout=5)
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["route", "chunks", "usage"]
    assert (events[0].route.provider, events[0].route.attempts) == ("backup", 2)
    chunks = [orjson.loads(c) for c in _chunks(events)]
    assert len(chunks) == 5
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello there!"
    assert events[-1].usage.total_tokens == 22
    [(_, _, route, usage, status)] = harness.recorder.calls
    assert (route.provider, status) == ("backup", "ok") and usage is not None


@pytest.mark.timeout(10)
async def test_stream_forwards_the_usage_chunk_when_asked(harness: Harness) -> None:
    request = _request("chat-model", stream=True, stream_options={"include_usage": True})
    events = [e async for e in harness.stub.StreamComplete(request, timeout=5)]
    last_chunk = orjson.loads(_chunks(events)[-1])
    assert last_chunk["choices"] == [] and last_chunk["usage"]["total_tokens"] == 22


@pytest.mark.timeout(10)
async def test_stream_error_after_the_first_chunk_is_in_band(harness: Harness) -> None:
    request = _request("chat-model", stream=True, messages=[{"role": "user", "content": "break"}])
    events = [e async for e in harness.stub.StreamComplete(request, timeout=5)]
    # The error follows the chunks read before it, as a message of its own.
    assert [e.WhichOneof("event") for e in events] == ["route", "chunks", "error"]
    assert len(_chunks(events)) == 2
    assert events[-1].error.code == "provider_unavailable"
    [(_, _, _, usage, status)] = harness.recorder.calls
    # Cut before the provider reported usage: billed for what was delivered, estimated
    # (router.delivered): the prompt by its body, the completion by the chunks' text.
    delivered = "".join(
        orjson.loads(c)["choices"][0]["delta"].get("content") or "" for c in _chunks(events)
    )
    assert status == "error"
    assert usage is not None and usage.completion_tokens == -(-len(delivered) // 6) > 0
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True])
async def test_model_not_found_carries_the_detail_trailer(
    harness: Harness, streaming: bool
) -> None:
    request = _request("no-such-model", stream=streaming)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if streaming:
            [e async for e in harness.stub.StreamComplete(request, timeout=5)]
        else:
            await harness.stub.Complete(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    detail = _detail(caught.value)
    err = from_detail(detail)
    assert (detail.code, err.http_status, err.param) == ("model_not_found", 404, "model")
    assert (
        err.message == "The model `no-such-model` does not exist or you do not have access to it."
    )


@pytest.mark.timeout(10)
async def test_every_deployment_failing_lists_the_attempts(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.Complete(_request("primary:chat-model"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    detail = _detail(caught.value)
    assert detail.code == "all_providers_failed" and detail.retryable
    # One deployment, retried once after a backoff (resilience.retry.passes defaults to 2).
    assert [(a.provider, a.deployment, a.code) for a in detail.attempts] == [
        ("primary", "primary/primary-chat", "provider_unavailable")
    ] * 2


@pytest.mark.timeout(10)
@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"text"'])
async def test_body_must_be_a_json_object(harness: Harness, body: bytes) -> None:
    request = router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS, model="chat-model", body=body
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.Complete(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _detail(caught.value).http_status == 400


@pytest.mark.timeout(10)
async def test_list_models(harness: Harness) -> None:
    reply = await harness.stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
    models = {m.id: m for m in reply.models}
    chat = models["chat-model"]
    assert (chat.provider, chat.context_window, chat.max_output_tokens, chat.speed_tps) == (
        "primary",
        128000,
        16384,
        180,
    )
    assert chat.best_for == "General purpose, reasoning"
    assert (chat.input_price_per_token, chat.output_price_per_token) == ("0.00000015", "0.0000006")
    assert chat.cached_input_price_per_token == "0.00000015"  # defaults to the input price
    assert list(chat.capabilities) == ["chat", "tools", "streaming"]
    assert list(chat.aliases) == ["chat-alias"]
    assert models["embed-model"].output_price_per_token == "0"
    assert models["embed-model"].speed_tps == 0  # unstated
    assert models["embed-model"].best_for == ""


# -- batching and ending early, with the upstream body scripted read by read -----------------

#: A recorded stream: five chunks, a usage chunk, ``[DONE]`` (each event ends with a blank line).
STREAM = (FIXTURES / "stream_plain.sse").read_bytes()
EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'


@dataclass
class Upstream(httpx.AsyncByteStream):
    """A provider's response body, delivered as ``reads`` (one network read each).

    The first read comes at once, each later one once ``release`` is set; with
    ``endless`` set, the body then goes on with that event, read after read, until closed.
    ``reads_done`` counts reads handed out; ``closed`` is set when the router closes it.
    """

    reads: Sequence[bytes] = (STREAM,)
    endless: bytes = b""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reads_done: int = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for n, data in enumerate(self.reads):
            if n:
                await self.release.wait()
            self.reads_done += 1
            yield data
        while self.endless:
            self.reads_done += 1
            yield self.endless

    async def aclose(self) -> None:
        self.closed.set()


@contextlib.asynccontextmanager
async def _router_over(
    upstream: Upstream, catalog_file: Path, metrics: RouterMetrics
) -> AsyncIterator[tuple[router_pb2_grpc.RouterStub, Recorder]]:
    """A real grpc.aio server whose every provider answers ``upstream``, and a client stub."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=upstream))
    live = LiveCatalog(
        catalog_file,
        lambda catalog, *, reuse: build_adapters(catalog, {}, reuse=reuse, transport=transport),
        metrics,
    )
    await live.load()
    recorder = Recorder()
    server = grpc.aio.server()
    service = RouterService(live, Failover(metrics), recorder)
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield router_pb2_grpc.RouterStub(channel), recorder
    finally:
        await server.stop(grace=None)
        await live.aclose()


async def _settled(count: Callable[[], int], *, within: float = 10.0) -> int:
    """``count()`` once it has not changed for 0.3 s; fails if it keeps changing for ``within``."""
    deadline = time.monotonic() + within
    last, since = count(), time.monotonic()
    while time.monotonic() - since < 0.3:
        assert time.monotonic() < deadline, f"still changing after {within} s: {count()}"
        await asyncio.sleep(0.05)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last


@pytest.mark.timeout(10)
async def test_what_one_upstream_read_brings_is_one_message(
    catalog_file: Path, metrics: RouterMetrics
) -> None:
    async with _router_over(Upstream(), catalog_file, metrics) as (stub, _):
        messages = [m async for m in stub.StreamComplete(_request("chat-model", stream=True))]
    assert [m.WhichOneof("event") for m in messages] == ["route", "chunks", "usage"]
    assert [orjson.loads(c)["choices"][0]["delta"].get("content") for c in _chunks(messages)] == [
        "",
        "Hello",
        " there",
        "!",
        None,
    ]


@pytest.mark.timeout(10)
async def test_chunks_of_separate_reads_are_not_held_back(
    catalog_file: Path, metrics: RouterMetrics
) -> None:
    third = STREAM.index(b"data: ", STREAM.index(b'" there"'))  # after " there"
    upstream = Upstream(reads=(STREAM[:third], STREAM[third:]))
    async with _router_over(upstream, catalog_file, metrics) as (stub, _):
        call = stub.StreamComplete(_request("chat-model", stream=True), timeout=5)
        assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("event") == "route"
        first = await asyncio.wait_for(call.read(), 5)
        # The first read's chunks arrived while the upstream had not sent the second read.
        assert (first.WhichOneof("event"), upstream.reads_done) == ("chunks", 1)
        assert [orjson.loads(c)["choices"][0]["delta"]["content"] for c in _chunks([first])] == [
            "",
            "Hello",
            " there",
        ]
        upstream.release.set()
        rest = []
        while (message := await asyncio.wait_for(call.read(), 5)) is not grpc.aio.EOF:
            rest.append(message)
    assert [m.WhichOneof("event") for m in rest] == ["chunks", "usage"]
    assert len(_chunks(rest)) == 2


@pytest.mark.timeout(10)
async def test_cancelled_stream_closes_upstream_and_bills_what_was_written(
    catalog_file: Path, metrics: RouterMetrics
) -> None:
    upstream = Upstream(reads=(EVENT, EVENT))  # the second read never comes
    async with _router_over(upstream, catalog_file, metrics) as (stub, recorder):
        call = stub.StreamComplete(_request("chat-model", stream=True), timeout=5)
        assert (await call.read()).WhichOneof("event") == "route"
        assert (await call.read()).WhichOneof("event") == "chunks"
        call.cancel()
        await asyncio.wait_for(upstream.closed.wait(), 5)
        await asyncio.wait_for(recorder.recorded.wait(), 5)
    assert [c[4] for c in recorder.calls] == ["cancelled"]
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    # The prompt and the one chunk written ("a"), estimated; billed once.
    assert recorder.calls[0][3] == delivered_usage("chat.completions", body, [EVENT[6:-2]])
    assert recorder.calls[0][3].completion_tokens == 1
    assert upstream.reads_done == 1


@pytest.mark.timeout(20)
async def test_a_client_that_stops_reading_stops_the_upstream_reads(
    catalog_file: Path, metrics: RouterMetrics
) -> None:
    big = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"a" * 2000 + b'"}}]}\n\n'
    upstream = Upstream(reads=(EVENT,), endless=big)
    upstream.release.set()
    async with _router_over(upstream, catalog_file, metrics) as (stub, recorder):
        call = stub.StreamComplete(_request("chat-model", stream=True), timeout=15)
        assert (await call.read()).WhichOneof("event") == "route"
        # Nothing more is read: gRPC's flow control (its windows hold some megabytes) holds
        # the servicer's writes, the bounded queue fills, and the router stops reading the
        # provider. Unbounded, the pump would never wait and this would not return.
        await _settled(lambda: upstream.reads_done)
        assert not upstream.closed.is_set()
        call.cancel()
        await asyncio.wait_for(upstream.closed.wait(), 5)
        await asyncio.wait_for(recorder.recorded.wait(), 5)
    assert [c[4] for c in recorder.calls] == ["cancelled"]
    # Billed by the chunks written to the gRPC stream, not those the pump had queued
    # (a full queue of 64 plus the message whose write was pending): far fewer than read.
    usage = recorder.calls[0][3]
    assert usage is not None
    per_chunk = estimate("a" * 2000)
    written = (usage.completion_tokens - estimate("a")) / per_chunk
    assert 0 < written <= upstream.reads_done - 1 - 64
