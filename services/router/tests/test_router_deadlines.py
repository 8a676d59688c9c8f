"""Deadlines and cancellation through a real grpc.aio server down to the provider's HTTP request.

The provider never answers; the tests show that the edge's deadline (the gRPC
timeout) and a caller going away each end the upstream request, and that the
deployment's in-flight count comes back to zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.testing import wait_for
from router.catalog import LiveCatalog
from router.failover import Failover
from router.handlers import RouterServicer
from router.metrics import RouterMetrics
from router.providers.registry import build_adapters
from router.service import RouterService

from .test_router_servicer import Recorder

pytestmark = pytest.mark.timeout(10)


@dataclass
class Upstream:
    """A provider that accepts requests and never answers; it notes when one is abandoned."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    hosts: list[str] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")


@dataclass
class Router:
    stub: router_pb2_grpc.RouterStub
    failover: Failover
    upstream: Upstream


@pytest.fixture
async def router(catalog_file: Path, metrics: RouterMetrics) -> AsyncIterator[Router]:
    upstream = Upstream()
    transport = httpx.MockTransport(upstream)
    live = LiveCatalog(
        catalog_file,
        lambda catalog, *, reuse: build_adapters(catalog, {}, reuse=reuse, transport=transport),
        metrics,
    )
    await live.load()
    failover = Failover(metrics)
    server = grpc.aio.server()
    service = RouterService(live, failover, Recorder())
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Router(router_pb2_grpc.RouterStub(channel), failover, upstream)
    finally:
        await channel.close()
        await server.stop(grace=None)
        await live.aclose()


def _request(stream: bool) -> router_pb2.CompleteRequest:
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}
    return router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS,
        model="chat-model",
        body=orjson.dumps({**body, "stream": stream}),
    )


def _inflight(router: Router) -> Callable[[], int]:
    return lambda: router.failover.balancer.inflight("primary/primary/primary-chat")


@pytest.mark.parametrize("stream", [False, True])
async def test_the_grpc_deadline_ends_the_upstream_request(router: Router, stream: bool) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if stream:
            [e async for e in router.stub.StreamComplete(_request(True), timeout=0.5)]
        else:
            await router.stub.Complete(_request(False), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    await asyncio.wait_for(router.upstream.cancelled.wait(), 2)
    assert router.upstream.hosts == ["primary.test"]  # no attempt after the deadline
    assert _inflight(router)() == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_caller_going_away_cancels_the_upstream_request(
    router: Router, stream: bool
) -> None:
    if stream:
        call = router.stub.StreamComplete(_request(True), timeout=5)
    else:
        call = router.stub.Complete(_request(False), timeout=5)
    await asyncio.wait_for(router.upstream.started.wait(), 2)
    assert _inflight(router)() == 1
    call.cancel()
    await asyncio.wait_for(router.upstream.cancelled.wait(), 2)
    assert router.upstream.hosts == ["primary.test"]  # cancelled, not failed over

    async def released() -> bool | None:
        return True if _inflight(router)() == 0 else None

    await wait_for(released, timeout_s=2, interval_s=0.01)
