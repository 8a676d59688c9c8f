"""The cross-replica rate limiter against a real nats-server (``edge.pipeline.ratelimit``).

Two ``RateLimiter``s on two NATS connections stand for two edge replicas sharing
one NATS. Windows are moved with an injected clock instead of waiting real
minutes, except in the one test that crosses a real (shifted) minute boundary.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client
from pydantic import ValidationError

from edge.metrics import EdgeMetrics
from edge.pipeline.ratelimit import (
    Decision,
    Limit,
    LimitKind,
    RateLimiter,
    RateLimits,
    Window,
    format_reset,
)
from gateway_common.errors import RateLimited, ServiceUnavailable
from gateway_common.nats import connect
from gateway_common.testing import nats_server

#: 2026-12-06 12:00:00 UTC: a minute and a day boundary both.
T0 = 1_796_558_400.0
assert T0 % 86_400 == 43_200 and T0 % 60 == 0


class FakeClock:
    """Wall time that moves only when told to (``tick`` per read, if set)."""

    def __init__(self, now: float, tick: float = 0.0) -> None:
        self.now = now
        self.tick = tick

    def __call__(self) -> float:
        now = self.now
        self.now += self.tick
        return now


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats-ratelimit")) as url:
        yield url


@pytest.fixture
async def conns(nats_url: str) -> AsyncIterator[tuple[Client, Client]]:
    """Two NATS connections: edge A's and edge B's."""
    a = await connect(nats_url, name="edge-a")
    b = await connect(nats_url, name="edge-b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 30.0)


@pytest.fixture
def metrics() -> tuple[EdgeMetrics, EdgeMetrics]:
    return EdgeMetrics(), EdgeMetrics()


@pytest.fixture
async def edges(
    conns: tuple[Client, Client], clock: FakeClock, metrics: tuple[EdgeMetrics, EdgeMetrics]
) -> tuple[RateLimiter, RateLimiter]:
    """Edge A's and edge B's limiters: one NATS, two connections, one (fake) clock."""
    a = RateLimiter(conns[0], clock=clock, metrics=metrics[0])
    b = RateLimiter(conns[1], clock=clock, metrics=metrics[1])
    await a.start()
    await b.start()  # idempotent: the second declaration changes nothing
    return a, b


def scope() -> str:
    """A fresh key scope, so tests sharing the module's server never share a counter."""
    return f"key:{uuid.uuid4()}"


def rpm(scope_: str, n: int) -> Limit:
    return Limit(scope_, LimitKind.REQUESTS, Window.MINUTE, n)


def metric(metrics: EdgeMetrics, line_start: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def burst(
    edges: tuple[RateLimiter, RateLimiter], limits: list[Limit], n: int, *, tokens: int = 0
) -> list[Decision]:
    """``n`` concurrent admissions, alternating between the two edges."""
    return list(
        await asyncio.gather(*(edges[i % 2].admit(limits, tokens=tokens) for i in range(n)))
    )


async def test_two_edges_admit_exactly_the_limit_under_concurrent_bursts(
    edges: tuple[RateLimiter, RateLimiter], metrics: tuple[EdgeMetrics, EdgeMetrics]
) -> None:
    limit = rpm(scope(), 25)
    decisions = await burst(edges, [limit], 120)
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 25
    assert sorted(d.states[0].used for d in admitted) == list(range(1, 26))
    for d in decisions:
        if not d.allowed:
            assert d.refused_by == limit
            assert d.retry_after_s == 30  # the window ends at T0 + 60; now is T0 + 30
            assert d.states[0].remaining == 0
    # Refusals were rolled back: the next request of the window sees exactly 25 counted.
    again = await edges[1].admit([limit])
    assert not again.allowed and again.states[0].used == 25
    refusals = 'switchyard_edge_ratelimited_total{scope_kind="key",window="minute"}'
    assert metric(metrics[0], refusals) + metric(metrics[1], refusals) == 120 - 25 + 1


async def test_bursts_across_a_window_boundary_stay_within_each_window(
    edges: tuple[RateLimiter, RateLimiter], clock: FakeClock
) -> None:
    limit = rpm(scope(), 20)
    # Each clock read moves 20 ms: the burst's 60 increments span the boundary at T0 + 60.
    clock.now, clock.tick = T0 + 59.5, 0.02
    decisions = await burst(edges, [limit], 60)
    clock.tick = 0.0
    per_window = Counter(d.states[0].window_start for d in decisions if d.allowed)
    assert set(per_window) == {int(T0), int(T0) + 60}
    assert per_window == {int(T0): 20, int(T0) + 60: 20}
    for d in decisions:
        if not d.allowed:
            end = d.states[0].window_start + 60
            assert d.retry_after_s is not None and 1 <= d.retry_after_s <= 60
            if end == int(T0) + 60:
                assert d.retry_after_s == 1  # refused in the last half second of the window
    # A third burst later in the new window: still 20 in it, in total.
    clock.now = T0 + 90.0
    late = await burst(edges, [limit], 30)
    assert sum(d.allowed for d in late) == 0
    clock.now = T0 + 120.0
    assert sum(d.allowed for d in await burst(edges, [limit], 30)) == 20


async def test_retry_after_is_the_true_time_to_the_window_end(
    edges: tuple[RateLimiter, RateLimiter], clock: FakeClock
) -> None:
    limit = rpm(scope(), 3)
    clock.now = T0 + 42.3
    assert all(d.allowed for d in await burst(edges, [limit], 3))
    refused = await edges[0].admit([limit])
    assert refused.retry_after_s == 18  # 17.7 s to T0 + 60, rounded up
    headers = refused.headers()
    assert headers["retry-after"] == "18"
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "18s"
    error = refused.error()
    assert isinstance(error, RateLimited) and error.http_status == 429
    assert error.retry_after == 18 and error.code == "rate_limit_exceeded"
    assert "requests per min (RPM): Limit 3, Used 3, Requested 1" in error.message
    clock.now = T0 + 59.99  # just before the Retry-After is up: still refused
    assert not (await edges[1].admit([limit])).allowed
    clock.now = T0 + 42.3 + 18  # when it is up: admitted, on either edge
    assert (await edges[1].admit([limit])).allowed


async def test_a_refused_request_consumes_no_quota_of_the_limits_that_passed(
    edges: tuple[RateLimiter, RateLimiter], clock: FakeClock
) -> None:
    key = scope()
    minute, day = rpm(key, 100), Limit(key, LimitKind.REQUESTS, Window.DAY, 3)
    assert all(d.allowed for d in await burst(edges, [minute, day], 3))
    refused = await burst(edges, [minute, day], 10)
    assert not any(d.allowed for d in refused)
    for d in refused:
        assert d.refused_by == day
        assert d.retry_after_s == 43_170  # 12:00:30 UTC: 11 h 59 m 30 s to midnight
    alone = await edges[0].admit([minute])
    assert alone.allowed and alone.states[0].used == 4  # the 10 refusals were taken back
    # The headers show the tightest request limit: the day's, none left.
    headers = refused[0].headers()
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "11h59m30s"
    assert "requests per day (RPD)" in str(refused[0].error())


async def test_token_limits_reserve_at_admission_and_settle_to_usage(
    edges: tuple[RateLimiter, RateLimiter], clock: FakeClock, conns: tuple[Client, Client]
) -> None:
    key = scope()
    tpm = Limit(key, LimitKind.TOKENS, Window.MINUTE, 1000)
    first = await edges[0].admit([tpm], tokens=600)
    assert first.allowed and first.reservation is not None
    assert first.headers()["x-ratelimit-remaining-tokens"] == "400"
    second = await edges[1].admit([tpm], tokens=600)
    assert not second.allowed and second.retry_after_s == 30
    assert "Limit 1000, Used 600, Requested 600" in str(second.error())
    await edges[0].settle(first.reservation, 100)  # used far less than reserved
    await edges[0].settle(first.reservation, 0)  # a repeat changes nothing
    third = await edges[1].admit([tpm], tokens=600)
    assert third.allowed and third.states[0].used == 700
    await edges[1].settle(third.reservation, 900)  # used more than reserved: counted
    probe = await edges[0].admit([tpm], tokens=1)
    assert not probe.allowed and probe.states[0].used == 1000
    # Larger than the limit itself: refused at once, no NATS call, no Retry-After.
    before = conns[0].stats["out_msgs"]
    too_large = await edges[0].admit([tpm], tokens=1001)
    assert conns[0].stats["out_msgs"] == before
    assert not too_large.allowed and too_large.retry_after_s is None
    assert "retry-after" not in too_large.headers()
    error = too_large.error()
    assert isinstance(error, RateLimited) and error.retry_after is None
    assert "Request too large" in error.message and "Requested 1001" in error.message
    # A settle after its window ended leaves the new window alone.
    late = await edges[0].admit([Limit(key, LimitKind.TOKENS, Window.DAY, 10**6)], tokens=500)
    clock.now = T0 + 61.0
    fresh = await edges[0].admit([tpm], tokens=10)
    assert fresh.allowed and fresh.states[0].used == 10
    await edges[0].settle(third.reservation, 0)  # already settled
    await edges[0].settle(late.reservation, 0)  # the day window is still on: corrected
    day = await edges[1].admit([Limit(key, LimitKind.TOKENS, Window.DAY, 10**6)], tokens=0)
    assert day.states[0].used == 0


async def test_a_settle_into_an_ended_window_changes_nothing(
    edges: tuple[RateLimiter, RateLimiter], clock: FakeClock
) -> None:
    tpm = Limit(scope(), LimitKind.TOKENS, Window.MINUTE, 1000)
    admitted = await edges[0].admit([tpm], tokens=800)
    clock.now = T0 + 60.5
    await edges[0].settle(admitted.reservation, 0)
    nxt = await edges[1].admit([tpm], tokens=900)
    assert nxt.allowed and nxt.states[0].used == 900  # not 100: the old window's -800 is dropped


async def test_mixed_request_and_token_limits_give_both_header_sets(
    edges: tuple[RateLimiter, RateLimiter],
) -> None:
    key = scope()
    limits = list(RateLimits(per_minute=10, per_day=1000, tokens_per_minute=5000).limits(key))
    decision = await edges[0].admit(limits, tokens=1200)
    assert decision.allowed
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "3800",
        "x-ratelimit-reset-tokens": "30s",
    }
    # Duplicated counters count once, with the smaller amount.
    twice = await edges[1].admit([rpm(key, 10), rpm(key, 2)])
    assert twice.allowed and len(twice.states) == 1 and twice.states[0].used == 2
    assert not (await edges[1].admit([rpm(key, 10), rpm(key, 2)])).allowed


async def test_no_nats_call_when_no_limit_applies(
    edges: tuple[RateLimiter, RateLimiter], conns: tuple[Client, Client]
) -> None:
    before = conns[0].stats["out_msgs"]
    decision = await edges[0].admit([], tokens=10_000)
    assert decision.allowed and decision.headers() == {} and decision.error() is None
    await edges[0].settle(decision.reservation, 123)
    assert conns[0].stats["out_msgs"] == before


async def test_a_real_minute_boundary(conns: tuple[Client, Client]) -> None:
    """Real time crosses a minute boundary (the clock is shifted so it is 1 s away)."""
    now = time.time()
    offset = math.ceil(now / 60) * 60 - now - 1.0

    def shifted() -> float:
        return time.time() + offset

    a, b = RateLimiter(conns[0], clock=shifted), RateLimiter(conns[1], clock=shifted)
    await a.start()
    limit = rpm(scope(), 5)
    decisions = list(await asyncio.gather(*(x.admit([limit]) for x in (a, b) * 5)))
    assert sum(d.allowed for d in decisions) == 5
    retry = {d.retry_after_s for d in decisions if not d.allowed}
    assert retry == {1}
    boundary = math.ceil(shifted())
    deadline = time.monotonic() + 4.0
    while not (decision := await b.admit([limit])).allowed:
        assert time.monotonic() < deadline, "the next window never admitted"
        assert decision.states[0].window_start == boundary - 60
        await asyncio.sleep(0.02)
    assert decision.states[0].window_start == boundary  # admitted in the next window only
    assert decision.states[0].used == 1


async def test_fail_open_when_nats_is_down_and_closed_for_the_chosen_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ExitStack() as server:
        url = server.enter_context(nats_server(tmp_path / "nats"))
        nc = await connect(url, name="edge-lonely")
        metrics = EdgeMetrics()
        limiter = RateLimiter(nc, metrics=metrics, fail_closed=frozenset({LimitKind.TOKENS}))
        await limiter.start()
        key = scope()
        rpm1 = rpm(key, 1)
        tpm = Limit(key, LimitKind.TOKENS, Window.MINUTE, 100)
        assert (await limiter.admit([rpm1])).allowed
        assert not (await limiter.admit([rpm1])).allowed
        server.close()  # nats-server stops
    try:
        caplog.set_level(logging.WARNING, logger="edge.pipeline.ratelimit")
        started = time.monotonic()
        down = await limiter.admit([rpm1])
        assert time.monotonic() - started < 1.0  # the 100 ms deadline, not a hang
        assert down.allowed and down.unchecked == {LimitKind.REQUESTS}
        assert down.error() is None and down.headers() == {}
        started = time.monotonic()
        again = await limiter.admit([rpm1])  # during the back-off: no NATS call tried
        assert time.monotonic() - started < 0.05 and again.allowed
        closed = await limiter.admit([rpm1, tpm], tokens=10)
        assert not closed.allowed and closed.unavailable
        error = closed.error()
        assert isinstance(error, ServiceUnavailable) and error.http_status == 503
        assert error.code == "rate_limiter_unavailable"
        assert metric(metrics, 'switchyard_edge_ratelimit_unavailable_total{kind="requests"}') == 3
        assert metric(metrics, 'switchyard_edge_ratelimit_unavailable_total{kind="tokens"}') == 1
        warnings = [r for r in caplog.records if "counters unavailable" in r.getMessage()]
        assert len(warnings) == 1  # one per outage, not one per request
        assert "requests open, tokens closed" in warnings[0].getMessage()
    finally:
        await nc.close()


async def test_added_latency_of_a_limited_request(
    edges: tuple[RateLimiter, RateLimiter],
) -> None:
    """A request under a per-minute and a per-day limit: one parallel round trip."""
    key = scope()
    limits = list(RateLimits(per_minute=10**6, per_day=10**6).limits(key))
    for _ in range(20):
        await edges[0].admit(limits)
    samples = []
    for _ in range(300):
        started = time.perf_counter()
        decision = await edges[0].admit(limits)
        samples.append(time.perf_counter() - started)
        assert decision.allowed
    median_ms = statistics.median(samples) * 1000
    print(f"rate-limited admission: median {median_ms:.3f} ms over {len(samples)}")
    assert median_ms < 5.0  # loopback is ~0.3 ms; 5 ms leaves room for a busy machine


def test_rate_limits_config() -> None:
    limits = RateLimits.model_validate({"per_minute": 60, "tokens_per_minute": 90_000})
    assert limits.limits("project:p1") == (
        Limit("project:p1", LimitKind.REQUESTS, Window.MINUTE, 60),
        Limit("project:p1", LimitKind.TOKENS, Window.MINUTE, 90_000),
    )
    assert RateLimits().limits("key:k") == ()
    assert RateLimits.model_validate({"per_day": None}).limits("key:k") == ()
    for bad in (
        {"per_minute": 0},
        {"per_minute": -1},
        {"per_minute": "60"},
        {"per_minute": 60.0},
        {"per_minute": True},
        {"per_hour": 5},
    ):
        with pytest.raises(ValidationError):
            RateLimits.model_validate(bad)
    assert RateLimits.model_config["extra"] == "forbid"
    with pytest.raises(ValueError):
        Limit("key:k", LimitKind.REQUESTS, Window.MINUTE, 0)
    assert Limit("endpoint:e", LimitKind.REQUESTS, Window.DAY, 1).scope_kind == "endpoint"
    assert Limit("user:u", LimitKind.REQUESTS, Window.DAY, 1).scope_kind == "other"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.0171, "18ms"), (1, "1s"), (1.2, "2s"), (59.5, "1m0s"), (360, "6m0s"),
     (86_399.5, "24h0m0s"), (3725, "1h2m5s")],
)  # fmt: skip
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text
