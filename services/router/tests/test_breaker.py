"""The breaker state machine and the sliding window it (and the retry budget) counts in."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.catalog import BreakerPolicy
from router.breaker import Breakers, State
from router.metrics import RouterMetrics
from router.window import SlidingWindow

from .scripted import Clock

RATE = BreakerPolicy(consecutive_failures=99, failure_rate=0.5, min_calls=4, window_s=10)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_failure_rate_over_the_window_opens(metrics: RouterMetrics, clock: Clock) -> None:
    breaker = Breakers(metrics, clock)["p/d"]
    for failed in (False, True, False):
        (breaker.failed if failed else breaker.succeeded)(RATE)
    assert breaker.state is State.CLOSED  # 3 calls: under min_calls
    breaker.failed(RATE)
    assert breaker.state is State.OPEN  # 2 of 4 failed


def test_old_failures_leave_the_window(metrics: RouterMetrics, clock: Clock) -> None:
    breaker = Breakers(metrics, clock)["p/d"]
    breaker.failed(RATE)
    breaker.failed(RATE)
    clock.now += 11
    for _ in range(3):
        breaker.succeeded(RATE)
    breaker.failed(RATE)
    assert breaker.state is State.CLOSED  # 1 of 4 in the window


def test_a_success_resets_the_consecutive_count(metrics: RouterMetrics, clock: Clock) -> None:
    policy = BreakerPolicy(consecutive_failures=2)
    breaker = Breakers(metrics, clock)["p/d"]
    breaker.failed(policy)
    breaker.succeeded(policy)
    breaker.failed(policy)
    assert breaker.state is State.CLOSED
    breaker.failed(policy)
    assert breaker.state is State.OPEN


def test_cool_down_then_one_probe(
    metrics: RouterMetrics, clock: Clock, registry: CollectorRegistry
) -> None:
    policy = BreakerPolicy(consecutive_failures=1, cooldown_s=5)
    breaker = Breakers(metrics, clock)["p/d"]
    breaker.failed(policy)
    assert not breaker.admit(policy) and breaker.retry_in(policy) == 5
    clock.now += 5
    assert breaker.admit(policy) and breaker.state is State.HALF_OPEN
    gauge = registry.get_sample_value(
        "switchyard_router_breaker_state", {"provider": "p", "deployment": "d"}
    )
    assert gauge == 1
    assert not breaker.admit(policy)  # the probe is out
    breaker.succeeded(policy)
    assert breaker.state is State.CLOSED and breaker.admit(policy)


def test_breakers_are_per_deployment(metrics: RouterMetrics, clock: Clock) -> None:
    breakers = Breakers(metrics, clock)
    assert breakers["p/a"] is breakers["p/a"] and breakers["p/a"] is not breakers["p/b"]


def test_sliding_window_totals() -> None:
    window = SlidingWindow(10)
    window.add(100.0, a=1)
    window.add(105.0, a=1, b=1)
    assert window.totals(105.0) == (2, 1)
    assert window.totals(110.5) == (1, 1)  # the slot of t=100 has left the window
    assert window.totals(200.0) == (0, 0)
    window.add(200.0, b=2)  # a slot reused after a full turn starts from zero
    assert window.totals(200.0) == (0, 2)


def test_a_stream_broken_after_its_commit_counts_once(metrics: RouterMetrics, clock: Clock) -> None:
    """Each stream: a success at its first chunk, revised to a failure when it breaks."""
    breaker = Breakers(metrics, clock)["p/d"]
    for _ in range(3):
        breaker.succeeded(RATE)
        breaker.broke_after_commit(RATE)
    assert breaker.state is State.CLOSED  # 3 calls, not 6: under min_calls
    breaker.succeeded(RATE)
    breaker.broke_after_commit(RATE)
    assert breaker.state is State.OPEN  # 4 of 4 failed
