"""RouterClient: error mapping from gRPC status + trailer, deadlines, stream cancellation."""

from __future__ import annotations

import grpc
import pytest

from edge.router_client import CallContext, RouterClient
from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    AllProvidersFailed,
    ProviderTimeout,
    ProviderUnavailable,
    ServiceUnavailable,
)
from gateway_common.grpc import channel_options

from .support import (
    RouterServer,
    batch_event,
    chunk_event,
    eventually,
    free_port,
    route_event,
    usage_event,
)

pytestmark = pytest.mark.timeout(30)

CTX = CallContext(request_id="r1", project_id="p1", api_key_id="k1")
CHAT = router_pb2.OPERATION_CHAT_COMPLETIONS


async def test_router_down_is_service_unavailable() -> None:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{free_port()}", options=channel_options()
    ) as ch:
        client = RouterClient(ch, timeout_s=2)
        with pytest.raises(ServiceUnavailable) as info:
            await client.complete(CHAT, "m", b"{}", CTX)
        assert info.value.http_status == 503
        assert not await client.serving(timeout_s=0.5)


async def test_deadline_is_provider_timeout(router: RouterServer) -> None:
    router.servicer.stream_events = [route_event(), None]
    async with grpc.aio.insecure_channel(router.addr) as ch:
        client = RouterClient(ch, timeout_s=0.3)
        events = client.stream(CHAT, "m", b"{}", CTX)
        assert (await anext(events)).WhichOneof("event") == "route"
        with pytest.raises(ProviderTimeout) as info:
            await anext(events)
        assert info.value.http_status == 504


async def test_detail_trailer_round_trips_attempts(router: RouterServer) -> None:
    router.servicer.error = AllProvidersFailed(
        {"a/d1": ProviderUnavailable("503 from a"), "b/d2": ProviderUnavailable("reset by b")}
    )
    async with grpc.aio.insecure_channel(router.addr) as ch:
        client = RouterClient(ch, timeout_s=5)
        with pytest.raises(Exception) as info:
            await client.complete(CHAT, "m", b"{}", CTX)
    err = info.value
    assert err.code == "all_providers_failed" and err.http_status == 502
    assert [(a.provider, a.deployment) for a in err.attempts] == [("a", "d1"), ("b", "d2")]


async def test_closing_the_stream_cancels_the_call(router: RouterServer) -> None:
    router.servicer.stream_events = [route_event(), chunk_event(b"{}"), None]
    async with grpc.aio.insecure_channel(router.addr) as ch:
        client = RouterClient(ch, timeout_s=30)
        events = client.stream(CHAT, "m", b"{}", CTX)
        assert (await anext(events)).WhichOneof("event") == "route"
        assert list((await anext(events)).chunks.chunks) == [b"{}"]
        await events.aclose()

        async def cancelled() -> bool:
            return router.servicer.cancelled.is_set()

        await eventually(cancelled)


async def test_chunks_come_as_batches_whichever_router_sent_them(router: RouterServer) -> None:
    router.servicer.stream_events = [
        route_event(),
        batch_event(b'{"n":1}', b'{"n":2}'),
        chunk_event(b'{"n":3}'),  # an older router: one chunk per message
        usage_event(),
    ]
    async with grpc.aio.insecure_channel(router.addr) as ch:
        events = [e async for e in RouterClient(ch, timeout_s=5).stream(CHAT, "m", b"{}", CTX)]
    assert [e.WhichOneof("event") for e in events] == ["route", "chunks", "chunks", "usage"]
    assert [list(e.chunks.chunks) for e in events[1:3]] == [[b'{"n":1}', b'{"n":2}'], [b'{"n":3}']]
