"""Failover's bounds and protections, on a manual clock: retries and backoff, Retry-After,
deadlines, the status of a failed call, circuit breakers, the retry budget, load balancing."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.catalog import Catalog
from gateway_common.errors import (
    AllProvidersFailed,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    to_detail,
)
from router.failover import Failover
from router.metrics import RouterMetrics
from router.providers.base import Completion, ProviderRequest, StreamChunk

from .scripted import REQ, Clock, Scripted, complete, policy, route, sample

pytestmark = pytest.mark.timeout(5)

OK = Completion(b"{}", None)
DOWN = ProviderUnavailable("500")
BREAKER = {"consecutive_failures": 2, "cooldown_s": 10}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failover(metrics: RouterMetrics, clock: Clock) -> Failover:
    return Failover(metrics, clock=clock, sleep=clock.sleep, rng=random.Random(7))


# -- retries, backoff, Retry-After, deadline --------------------------------------------------


async def test_a_single_deployment_is_retried_once_after_a_backoff(
    failover: Failover, clock: Clock, registry: CollectorRegistry
) -> None:
    a = Scripted("a", then=[DOWN])
    _, info = await failover.call(route(a), REQ, complete, deadline=None)
    assert (info.attempts, len(a.requests)) == (2, 2)
    [wait] = clock.slept
    assert 0.125 <= wait <= 0.25  # backoff_s 0.25 with jitter in [b/2, b]
    assert sample(registry, "switchyard_router_retries_total", model="public") == 1


async def test_failover_to_another_deployment_does_not_wait(
    failover: Failover, clock: Clock
) -> None:
    a, b = Scripted("a", DOWN), Scripted("b")
    _, info = await failover.call(route(a, b), REQ, complete, deadline=None)
    assert (info.provider, info.attempts, clock.slept) == ("b", 2, [])


async def test_attempts_are_bounded_by_passes(failover: Failover, clock: Clock) -> None:
    a, b = Scripted("a", DOWN), Scripted("b", ProviderTimeout("slow"))
    three = policy(
        retry={"passes": 3, "backoff_s": 1, "max_backoff_s": 1.5},
        breaker={"consecutive_failures": 99},
    )
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(route(a, b, policy=three), REQ, complete, deadline=None)
    names = [name for name, _ in caught.value.failures]
    assert names == ["a/a/a-model", "b/b/b-model"] * 3
    assert len(a.requests) == len(b.requests) == 3
    assert len(to_detail(caught.value).attempts) == 6
    assert 0.5 <= clock.slept[0] <= 1 and 0.75 <= clock.slept[1] <= 1.5  # doubled, then capped


async def test_retry_after_is_respected(failover: Failover, clock: Clock) -> None:
    a = Scripted("a", then=[ProviderUnavailable("429", retry_after=1.5)])
    _, info = await failover.call(route(a), REQ, complete, deadline=None)
    assert (info.attempts, clock.slept) == (2, [1.5])


async def test_a_retry_after_over_the_cap_is_not_waited_for(
    failover: Failover, clock: Clock
) -> None:
    a = Scripted("a", then=[ProviderUnavailable("429", retry_after=60)])
    with pytest.raises(AllProvidersFailed):
        await failover.call(route(a), REQ, complete, deadline=None)
    assert (len(a.requests), clock.slept) == (1, [])


async def test_no_wait_ends_past_the_deadline(failover: Failover, clock: Clock) -> None:
    too_late = Scripted("a", then=[ProviderUnavailable("429", retry_after=1)])
    with pytest.raises(AllProvidersFailed):
        await failover.call(route(too_late), REQ, complete, deadline=clock.now + 0.9)
    assert (len(too_late.requests), clock.slept) == (1, [])

    in_time = Scripted("a", then=[ProviderUnavailable("429", retry_after=1)])
    _, info = await failover.call(route(in_time), REQ, complete, deadline=clock.now + 1.1)
    assert (info.attempts, clock.slept) == (2, [1])


async def test_client_errors_are_not_retried(failover: Failover) -> None:
    a = Scripted("a", ProviderRejected("bad", http_status=400))
    b = Scripted("b")
    with pytest.raises(ProviderRejected):
        await failover.call(route(a, b), REQ, complete, deadline=None)
    assert (len(a.requests), len(b.requests)) == (1, 0)


# -- the status of a call whose attempts all failed -------------------------------------------


@pytest.mark.parametrize(
    ("errors", "status", "code"),
    [
        ([ProviderUnavailable("429", http_status=429)] * 2, 429, "RESOURCE_EXHAUSTED"),
        ([ProviderTimeout("slow")] * 2, 504, "DEADLINE_EXCEEDED"),
        (
            [ProviderUnavailable("429", http_status=429), ProviderTimeout("slow")],
            502,
            "UNAVAILABLE",
        ),
        ([DOWN, DOWN], 502, "UNAVAILABLE"),
    ],
)
async def test_all_failed_status(
    failover: Failover, errors: list[ProviderUnavailable], status: int, code: str
) -> None:
    a, b = Scripted("a", errors[0]), Scripted("b", errors[1])
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(
            route(a, b, policy=policy(retry={"passes": 1})), REQ, complete, deadline=None
        )
    assert (caught.value.http_status, caught.value.grpc_code.name) == (status, code)
    assert to_detail(caught.value).http_status == status


# -- circuit breakers -------------------------------------------------------------------------


def _state(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(
        "switchyard_router_breaker_state", {"provider": name, "deployment": f"{name}/{name}-model"}
    )


async def test_breaker_opens_skips_then_probes_and_closes(
    failover: Failover, clock: Clock, registry: CollectorRegistry
) -> None:
    a, b = Scripted("a", DOWN), Scripted("b")
    r = route(a, b, policy=policy(breaker=BREAKER, retry={"passes": 1}))
    for _ in range(2):
        await failover.call(r, REQ, complete, deadline=None)
    assert (len(a.requests), _state(registry, "a")) == (2, 2)  # open

    _, info = await failover.call(r, REQ, complete, deadline=None)
    assert (info.provider, info.attempts, len(a.requests)) == ("b", 1, 2)  # skipped

    clock.now += 10  # cool-down over: the next call is the probe
    a.result = OK
    _, info = await failover.call(r, REQ, complete, deadline=None)
    assert (info.provider, len(a.requests), _state(registry, "a")) == ("a", 3, 0)
    transitions = {
        state: sample(
            registry,
            "switchyard_router_breaker_transitions_total",
            provider="a",
            deployment="a/a-model",
            state=state,
        )
        for state in ("open", "half_open", "closed")
    }
    assert transitions == {"open": 1, "half_open": 1, "closed": 1}


async def test_a_failed_probe_reopens(
    failover: Failover, clock: Clock, registry: CollectorRegistry
) -> None:
    a, b = Scripted("a", DOWN), Scripted("b")
    r = route(a, b, policy=policy(breaker=BREAKER, retry={"passes": 1}))
    for _ in range(2):
        await failover.call(r, REQ, complete, deadline=None)
    clock.now += 10
    await failover.call(r, REQ, complete, deadline=None)
    assert (len(a.requests), _state(registry, "a")) == (3, 2)
    await failover.call(r, REQ, complete, deadline=None)
    assert len(a.requests) == 3  # a new cool-down started


@pytest.mark.parametrize(
    ("error", "status"),
    [(DOWN, 502), (ProviderUnavailable("429", http_status=429), 429), (ProviderTimeout("t"), 504)],
)
async def test_every_breaker_open_fails_fast_as_the_failures_that_opened_it(
    failover: Failover, error: ProviderUnavailable, status: int
) -> None:
    a = Scripted("a", error)
    r = route(a, policy=policy(breaker=BREAKER, retry={"passes": 1}))
    for _ in range(2):
        with pytest.raises(AllProvidersFailed):
            await failover.call(r, REQ, complete, deadline=None)
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(r, REQ, complete, deadline=None)
    [(name, err)] = caught.value.failures
    assert (name, err.code, len(a.requests)) == ("a/a/a-model", "circuit_open", 2)
    assert isinstance(err, ProviderUnavailable) and err.retry_after == 10
    assert caught.value.http_status == status  # a rate-limited model keeps answering 429


async def test_client_errors_do_not_open_the_breaker(
    failover: Failover, registry: CollectorRegistry
) -> None:
    a = Scripted("a", ProviderRejected("bad", http_status=400))
    for _ in range(3):
        with pytest.raises(ProviderRejected):
            await failover.call(
                route(a, policy=policy(breaker=BREAKER)), REQ, complete, deadline=None
            )
    assert _state(registry, "a") == 0


async def test_only_one_half_open_probe_at_a_time(failover: Failover, clock: Clock) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    class Slow(Scripted):
        async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
            self.requests.append(req)
            started.set()
            await gate.wait()
            return OK

    a, b = Slow("a"), Scripted("b")
    r = route(a, b, policy=policy(breaker=BREAKER, retry={"passes": 1}))
    breaker = failover.breakers["a/a/a-model"]
    for _ in range(2):
        breaker.failed(r.policy.breaker)
    clock.now += 10
    probe = asyncio.create_task(failover.call(r, REQ, complete, deadline=None))
    await started.wait()
    _, info = await failover.call(r, REQ, complete, deadline=None)
    assert info.provider == "b"  # the probe is in flight: others skip a
    gate.set()
    assert (await probe)[1].provider == "a"


async def test_a_cancelled_probe_frees_the_slot(failover: Failover, clock: Clock) -> None:
    started = asyncio.Event()

    class Hanging(Scripted):
        async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
            self.requests.append(req)
            started.set()
            await asyncio.Event().wait()

    a = Hanging("a")
    r = route(a, policy=policy(breaker=BREAKER))
    breaker = failover.breakers["a/a/a-model"]
    for _ in range(2):
        breaker.failed(r.policy.breaker)
    clock.now += 10
    task = asyncio.create_task(failover.call(r, REQ, complete, deadline=None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.admit(r.policy.breaker)  # the next call may probe
    assert failover.balancer.inflight("a/a/a-model") == 0


async def test_a_stream_breaking_after_its_first_chunk_counts_against_the_breaker(
    failover: Failover,
) -> None:
    a = Scripted("a", steps=[StreamChunk(b"1"), DOWN])
    r = route(a, policy=policy(breaker={"consecutive_failures": 1}))
    committed = await failover.stream(r, REQ, deadline=None)
    assert failover.balancer.inflight("a/a/a-model") == 1
    with pytest.raises(ProviderUnavailable):
        async for _ in committed:
            pass
    await committed.aclose()
    assert failover.balancer.inflight("a/a/a-model") == 0
    assert not failover.breakers["a/a/a-model"].admit(r.policy.breaker)


# -- retry budget -----------------------------------------------------------------------------


async def test_a_spent_retry_budget_stops_the_call(
    failover: Failover, registry: CollectorRegistry
) -> None:
    stingy = policy(
        retry_budget={"ratio": 0.5, "min_per_s": 0}, breaker={"consecutive_failures": 99}
    )
    a, b = Scripted("a", DOWN), Scripted("b")
    r = route(a, b, policy=stingy)
    # Budget: 0.5 retries per call. Call 1 cannot fail over (0.5 < 1); call 2 can (1.0).
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(r, REQ, complete, deadline=None)
    assert list(caught.value.errors) == ["a/a/a-model"] and not b.requests
    _, info = await failover.call(r, REQ, complete, deadline=None)
    assert info.provider == "b"
    assert sample(registry, "switchyard_router_retry_budget_exhausted_total", model="public") == 1


# -- load balancing ---------------------------------------------------------------------------


async def test_equal_priority_shares_load_by_weight(failover: Failover) -> None:
    a, b = Scripted("a"), Scripted("b")
    r = route(a, b, a={"priority": 0, "weight": 3}, b={"priority": 0, "weight": 1})
    served = [(await failover.call(r, REQ, complete, deadline=None))[1].provider for _ in range(8)]
    assert served == ["a", "a", "b", "a"] * 2


async def test_least_in_flight_goes_first(failover: Failover) -> None:
    a = Scripted("a", steps=[StreamChunk(b"1"), StreamChunk(b"2")])
    b = Scripted("b")
    r = route(a, b, a={"priority": 0}, b={"priority": 0})
    held = await failover.stream(r, REQ, deadline=None)  # a: round robin's first pick
    assert held.info.provider == "a"
    for _ in range(3):  # while a's stream is open, b has fewer calls in flight
        assert (await failover.call(r, REQ, complete, deadline=None))[1].provider == "b"
    await held.aclose()


async def test_priority_groups_fail_over_in_order(failover: Failover) -> None:
    a, b, c = Scripted("a", DOWN), Scripted("b", DOWN), Scripted("c")
    r = route(
        a,
        b,
        c,
        a={"priority": 1},
        b={"priority": 1},
        c={"priority": 2},
        policy=policy(retry={"passes": 1}),
    )
    _, info = await failover.call(r, REQ, complete, deadline=None)
    assert (info.provider, info.attempts) == ("c", 3)
    assert len(a.requests) == len(b.requests) == 1


async def test_zero_weight_only_serves_when_the_others_failed(failover: Failover) -> None:
    a, b = Scripted("a", then=[OK, DOWN]), Scripted("b")
    r = route(
        a, b, a={"priority": 0}, b={"priority": 0, "weight": 0}, policy=policy(retry={"passes": 1})
    )
    providers = [
        (await failover.call(r, REQ, complete, deadline=None))[1].provider for _ in range(2)
    ]
    assert providers == ["a", "b"]


def test_the_catalog_carries_priorities_and_policy() -> None:
    catalog = Catalog.model_validate(
        {
            "version": 1,
            "providers": {"p": {"kind": "openai", "base_url": "http://p/v1"}},
            "models": {"m": {"deployments": [{"provider": "p", "model": "x", "priority": 3}]}},
            "resilience": {"breaker": {"cooldown_s": 1}, "retry": {"passes": 1}},
        }
    )
    assert catalog.models["m"].deployments[0].priority == 3
    assert (catalog.resilience.breaker.cooldown_s, catalog.resilience.retry.passes) == (1, 1)
    assert catalog.resilience.retry_budget.ratio == 0.2  # defaults fill the rest
