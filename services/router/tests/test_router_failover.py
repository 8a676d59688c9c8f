"""Failover over scripted adapters: order, what moves on, streams, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.errors import (
    AllProvidersFailed,
    GatewayError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from router.failover import Failover
from router.metrics import RouterMetrics
from router.providers.base import Completion, ProviderRequest, StreamChunk

from .scripted import REQ, Scripted, complete, route, sample


@pytest.mark.timeout(5)
async def test_first_success_wins(metrics: RouterMetrics, registry: CollectorRegistry) -> None:
    a, b = Scripted("a", Completion(b'{"ok":1}', None)), Scripted("b")
    result, info = await Failover(metrics).call(route(a, b), REQ, complete, deadline=None)
    assert result.body == b'{"ok":1}'
    assert (info.provider, info.deployment, info.attempts, info.model) == (
        "a",
        "a/a-model",
        1,
        "public",
    )
    assert info.provider_model == "a-model"
    assert a.requests[0].provider_model == "a-model" and not b.requests
    labels = {"provider": "a", "deployment": "a/a-model", "outcome": "ok"}
    assert sample(registry, "switchyard_router_upstream_attempts_total", **labels) == 1


@pytest.mark.timeout(5)
@pytest.mark.parametrize("error", [ProviderUnavailable("down"), ProviderTimeout("slow")])
async def test_retryable_error_moves_on(
    metrics: RouterMetrics, registry: CollectorRegistry, error: GatewayError
) -> None:
    a, b = Scripted("a", error), Scripted("b", Completion(b"{}", None))
    _, info = await Failover(metrics).call(route(a, b), REQ, complete, deadline=None)
    assert (info.provider, info.attempts) == ("b", 2)
    assert b.requests[0].provider_model == "b-model"
    assert REQ.provider_model == ""  # the template is never changed
    assert sample(registry, "switchyard_router_failovers_total", model="public") == 1
    labels = {"provider": "a", "deployment": "a/a-model", "outcome": error.code}
    assert sample(registry, "switchyard_router_upstream_attempts_total", **labels) == 1


@pytest.mark.timeout(5)
async def test_non_retryable_error_stops(metrics: RouterMetrics) -> None:
    rejected = ProviderRejected("bad temperature", http_status=400)
    a, b = Scripted("a", rejected), Scripted("b")
    with pytest.raises(ProviderRejected) as caught:
        await Failover(metrics).call(route(a, b), REQ, complete, deadline=None)
    assert caught.value is rejected
    assert not b.requests


@pytest.mark.timeout(5)
async def test_all_failed_keeps_every_error(metrics: RouterMetrics) -> None:
    a, b = Scripted("a", ProviderUnavailable("a down")), Scripted("b", ProviderTimeout("b slow"))
    with pytest.raises(AllProvidersFailed) as caught:
        await Failover(metrics).call(route(a, b), REQ, complete, deadline=None)
    assert list(caught.value.errors) == ["a/a/a-model", "b/b/b-model"]
    assert caught.value.retryable


@pytest.mark.timeout(5)
async def test_no_attempt_after_the_deadline(metrics: RouterMetrics) -> None:
    a, b = Scripted("a", ProviderUnavailable("a down")), Scripted("b")
    with pytest.raises(AllProvidersFailed) as caught:
        await Failover(metrics).call(route(a, b), REQ, complete, deadline=time.monotonic() - 1)
    assert list(caught.value.errors) == ["a/a/a-model"]
    assert not b.requests


@pytest.mark.timeout(5)
async def test_stream_fails_over_before_the_first_chunk(metrics: RouterMetrics) -> None:
    a = Scripted("a", steps=[ProviderUnavailable("reset")])
    b = Scripted("b", steps=[StreamChunk(b"1"), StreamChunk(b"2")])
    committed = await Failover(metrics).stream(route(a, b), REQ, deadline=None)
    assert (committed.info.provider, committed.info.attempts) == ("b", 2)
    assert a.closed_streams == 1
    assert [c.data async for c in committed] == [b"1", b"2"]
    assert b.closed_streams == 1


@pytest.mark.timeout(5)
async def test_stream_with_no_chunk_is_a_retryable_failure(metrics: RouterMetrics) -> None:
    a, b = Scripted("a", steps=[]), Scripted("b", steps=[StreamChunk(b"1")])
    committed = await Failover(metrics).stream(route(a, b), REQ, deadline=None)
    assert committed.info.provider == "b"
    await committed.aclose()


@pytest.mark.timeout(5)
async def test_after_the_first_chunk_errors_belong_to_the_caller(metrics: RouterMetrics) -> None:
    a = Scripted("a", steps=[StreamChunk(b"1"), ProviderUnavailable("gone")])
    b = Scripted("b", steps=[StreamChunk(b"x")])
    committed = await Failover(metrics).stream(route(a, b), REQ, deadline=None)
    seen = []
    with pytest.raises(ProviderUnavailable):
        async for chunk in committed:
            seen.append(chunk.data)
    assert seen == [b"1"] and not b.requests


@pytest.mark.timeout(5)
async def test_closing_a_committed_stream_closes_the_provider_stream(
    metrics: RouterMetrics,
) -> None:
    a = Scripted("a", steps=[StreamChunk(b"1"), StreamChunk(b"2")])
    committed = await Failover(metrics).stream(route(a), REQ, deadline=None)
    async with contextlib.aclosing(committed):
        pass  # not even iterated
    assert a.closed_streams == 1


@pytest.mark.timeout(5)
async def test_cancelled_attempt_is_not_retried(metrics: RouterMetrics) -> None:
    started = asyncio.Event()

    class Hanging(Scripted):
        async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError

    a, b = Hanging("a"), Scripted("b")
    task = asyncio.create_task(Failover(metrics).call(route(a, b), REQ, complete, deadline=None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not b.requests
