"""Property tests of the rate limiter (issue 19, drill d07) against a real nats-server.

Hypothesis draws sequences of operations (admit a request reserving some tokens,
settle an admitted request's reservation, move a fake clock) and runs them on two
``RateLimiter``s, edge A's and edge B's, that share one NATS. A plain model of
clock-aligned windows says what each call must answer; every step is checked
against it:

- a request is admitted iff every limit's window still has room for its cost
  (a serial order: no concurrency, so the contract is exact);
- a refused request consumes nothing, an admitted one counts in the window it
  landed in, and a settlement corrects that window only while it lasts;
- ``retry_after_s`` is the whole seconds to the refusing window's end (>= 1);
- per window, the requests admitted never exceed the request limit.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limits import RateLimitItemPerMinute

from edge.pipeline.ratelimit import Decision, Limit, LimitKind, RateLimiter, Window
from edge.pipeline.ratelimit_store import window_start
from gateway_common.nats import connect

#: 2026-12-06 12:00:00 UTC: a minute and a day boundary both.
T0 = 1_796_558_400.0


class FakeClock:
    """Wall time that moves only when an operation says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Admit:
    edge: int  # 0: edge A, 1: edge B
    tokens: int


@dataclass(frozen=True)
class Settle:
    which: int  # index into the admitted, unsettled reservations (modulo)
    used: int


@dataclass(frozen=True)
class Advance:
    seconds: float


_ops = st.one_of(
    st.builds(Admit, edge=st.integers(0, 1), tokens=st.integers(0, 40)),
    st.builds(Settle, which=st.integers(0, 50), used=st.integers(0, 60)),
    st.builds(Advance, seconds=st.sampled_from([0.25, 1.0, 7.5, 29.0, 59.9, 60.0, 61.0])),
)


class Model:
    """What the counters must hold: per (limit, window start), the sum of costs counted."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Limit, int], int] = defaultdict(int)
        self.admitted: dict[tuple[Limit, int], int] = defaultdict(int)

    def window(self, limit: Limit, now: float) -> int:
        return window_start(now, limit.window.seconds)

    def cost(self, limit: Limit, tokens: int) -> int:
        return 1 if limit.kind is LimitKind.REQUESTS else tokens

    def fits(self, limit: Limit, tokens: int, now: float) -> bool:
        key = (limit, self.window(limit, now))
        return self.counts[key] + self.cost(limit, tokens) <= limit.amount


async def _run(nats_url: str, limits: list[Limit], ops: list[Admit | Settle | Advance]) -> None:
    clock = FakeClock(T0 + 0.5)
    conns = [await connect(nats_url, name=f"prop-edge-{i}") for i in range(2)]
    try:
        edges = [RateLimiter(nc, clock=clock, timeout_s=2.0) for nc in conns]
        await edges[0].start()
        model = Model()
        # admitted reservations: (decision, the token windows it landed in, reserved)
        open_: list[tuple[Decision, dict[Limit, int], int]] = []
        for op in ops:
            now = clock()
            if isinstance(op, Advance):
                clock.now += op.seconds
            elif isinstance(op, Admit):
                too_large = any(x.kind is LimitKind.TOKENS and op.tokens > x.amount for x in limits)
                expect = not too_large and all(model.fits(x, op.tokens, now) for x in limits)
                decision = await edges[op.edge].admit(limits, tokens=op.tokens)
                assert decision.allowed is expect, (op, now, dict(model.counts))
                if too_large:
                    assert decision.retry_after_s is None
                elif not expect:
                    refusing = [x for x in limits if not model.fits(x, op.tokens, now)]
                    ends = {_window_end(x, model, now) for x in refusing}
                    assert decision.retry_after_s is not None
                    assert decision.retry_after_s == max(1, math.ceil(max(ends) - now))
                    assert decision.error() is not None
                else:
                    windows = {}
                    for x in limits:
                        key = (x, model.window(x, now))
                        model.counts[key] += model.cost(x, op.tokens)
                        if x.kind is LimitKind.REQUESTS:
                            model.admitted[key] += 1
                        else:
                            windows[x] = key[1]
                    if decision.reservation is not None:
                        open_.append((decision, windows, op.tokens))
            elif open_:
                decision, windows, reserved = open_.pop(op.which % len(open_))
                await edges[0].settle(decision.reservation, op.used)
                for limit, start in windows.items():
                    if now < start + limit.window.seconds:
                        model.counts[limit, start] += op.used - reserved
        for (limit, _), n in model.admitted.items():
            assert n <= limit.amount
        # The counters agree with the model in the windows of the clock's now.
        for limit in limits:
            item = RateLimitItemPerMinute(limit.amount, namespace="v1")
            item_key = item.key_for(limit.scope, limit.kind.value)
            got = await edges[1].storage.get(item_key)
            assert got == model.counts[limit, model.window(limit, clock())], limit
    finally:
        for nc in conns:
            await nc.close()


def _window_end(limit: Limit, model: Model, now: float) -> float:
    return model.window(limit, now) + limit.window.seconds


@settings(
    max_examples=int(os.environ.get("SWITCHYARD_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rpm=st.integers(1, 6),
    tpm=st.one_of(st.none(), st.integers(1, 80)),
    ops=st.lists(_ops, min_size=1, max_size=40),
)
def test_limiter_matches_the_window_model(
    nats_url: str, rpm: int, tpm: int | None, ops: list[Admit | Settle | Advance]
) -> None:
    scope = f"key:prop-{uuid.uuid4().hex[:12]}"
    limits = [Limit(scope, LimitKind.REQUESTS, Window.MINUTE, rpm)]
    if tpm is not None:
        limits.append(Limit(scope, LimitKind.TOKENS, Window.MINUTE, tpm))
    asyncio.run(_run(nats_url, limits, ops))
