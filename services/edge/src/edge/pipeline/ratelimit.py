"""Rate limits that hold across edge replicas: requests and tokens, per minute and per day.

Who calls it: every surface (``/v1``, the Gateway API, channels), after auth and
before budget admission (seed 001's order), with the limits that apply to the call,
e.g. a key's and its endpoint's::

    decision = await limiter.admit([*key_limits, *endpoint_limits], tokens=worst_case)
    if (error := decision.error()) is not None:
        raise error                      # 429 with retry_after, or 503 (fail closed)
    ...call the router...
    await limiter.settle(decision.reservation, tokens_used)   # once, when usage is known
    response.headers.update(decision.headers())                # x-ratelimit-*

Algorithm: the ``limits`` package's ``FixedWindowRateLimiter``, unchanged, on
``NatsCounterStorage`` (clock-aligned windows, JetStream counters shared by every
edge; see ``ratelimit_store``). Each limit is one atomic increment, all of a request's
limits in parallel, so a limited request costs one NATS round trip; a request with no
limit makes no NATS call at all.

Contract:

- **Exact.** A request limit admits at most ``amount`` requests per window, over
  any number of edges: the server serializes the increments, each admitted request's
  increment is permanent and was at most ``amount`` when made. A token limit admits
  at most ``amount`` tokens *reserved* per window (``settle`` then corrects the window
  by what was really used, which may end above the limit when usage exceeds the
  reservation).
- **A refused request consumes nothing.** All limits are incremented; when any one
  refuses, every increment of this request is rolled back (``-cost`` into the same
  window). The race this leaves: while a refused request's increment is still in
  flight, another request may see the counter over the limit and be refused too
  (never admitted wrongly). So near the limit, under concurrency, a request may be
  refused that a serial order would have admitted; a single request limit is not
  affected (nothing is refused before it is full), a token limit or a mix of limits is.
- **Retry-After is true.** ``retry_after_s`` is the whole number of seconds (rounded
  up, at least 1) until every refusing window has ended; the next window starts at 0.
  A token reservation larger than a token limit's amount can never fit: it is refused
  without a NATS call and without ``retry_after_s`` (OpenAI's "Request too large").
- **Fail mode, per kind.** A counter that does not answer within ``timeout_s`` (NATS
  down, slow, stream missing) leaves its limit unchecked: kinds in ``fail_closed``
  refuse the request (``Decision.error()`` is a 503), the others admit it
  (``Decision.unchecked`` names them). Default: both kinds fail open. Either way
  ``switchyard_edge_ratelimit_unavailable_total{kind}`` counts it and one warning is
  logged per outage; for ``outage_backoff_s`` after a failure no NATS call is tried,
  so an outage costs the requests nothing but the first one's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from nats.aio.client import Client
from pydantic import BaseModel, ConfigDict, Field

from gateway_common.errors import GatewayError, RateLimited, ServiceUnavailable
from gateway_common.nats import RATELIMIT_STREAMS, ensure_streams

from ..metrics import EdgeMetrics
from .ratelimit_store import Clock, CountersUnavailable, Hit, NatsCounterStorage

__all__ = [
    "Decision",
    "Limit",
    "LimitKind",
    "LimitReached",
    "LimitState",
    "RateLimiter",
    "RateLimits",
    "Reservation",
    "Window",
    "format_reset",
]

log = logging.getLogger(__name__)

#: The ``limits`` namespace of every key: bump it to start every counter afresh.
_NAMESPACE = "v1"
_SCOPE_KINDS = frozenset({"key", "project", "endpoint"})


class LimitKind(StrEnum):
    """What a limit counts: requests (cost 1 each) or tokens (the request's reservation)."""

    REQUESTS = "requests"
    TOKENS = "tokens"


class Window(StrEnum):
    """A limit's clock-aligned window: minutes start at :00, days at 00:00 UTC."""

    MINUTE = "minute"
    DAY = "day"

    @property
    def seconds(self) -> int:
        """The window's length."""
        return 60 if self is Window.MINUTE else 86_400


_ITEMS: dict[Window, type[RateLimitItem]] = {
    Window.MINUTE: RateLimitItemPerMinute,
    Window.DAY: RateLimitItemPerDay,
}
_WORDS = {
    (LimitKind.REQUESTS, Window.MINUTE): "requests per min (RPM)",
    (LimitKind.REQUESTS, Window.DAY): "requests per day (RPD)",
    (LimitKind.TOKENS, Window.MINUTE): "tokens per min (TPM)",
    (LimitKind.TOKENS, Window.DAY): "tokens per day (TPD)",
}


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: at most ``amount`` of ``kind`` per ``window`` for ``scope``.

    ``scope`` names what is limited, ``"<kind>:<id>"``: ``key:<api key id>``,
    ``project:<project id>``, ``endpoint:<endpoint id>``. Two limits with the same
    scope, kind and window share one counter (whatever their amounts).
    """

    scope: str
    kind: LimitKind
    window: Window
    amount: int

    def __post_init__(self) -> None:
        if not self.scope:
            raise ValueError("a limit needs a scope")
        if isinstance(self.amount, bool) or self.amount < 1:
            raise ValueError(f"a limit's amount must be a positive integer, not {self.amount!r}")

    @property
    def scope_kind(self) -> str:
        """The scope's kind (``key``, ``project``, ``endpoint``; ``other``): a bounded label."""
        kind = self.scope.partition(":")[0]
        return kind if kind in _SCOPE_KINDS else "other"

    def describe(self) -> str:
        """OpenAI's words for the limit, e.g. ``requests per min (RPM)``."""
        return _WORDS[self.kind, self.window]


PositiveLimit = Annotated[int, Field(strict=True, ge=1, le=10**15)]


class RateLimits(BaseModel):
    """The ``rate_limits`` of an API key, a project or an endpoint (all optional).

    Stored and accepted by the admin API as ``{"per_minute": 60, "per_day": 10000,
    "tokens_per_minute": 90000}``; an absent or null field is no limit of that kind.
    Amounts are JSON integers >= 1 (``"60"``, ``60.0``, ``true`` and 0 are refused).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_minute: PositiveLimit | None = Field(
        default=None, description="Requests admitted per clock minute (starting at :00)."
    )
    per_day: PositiveLimit | None = Field(
        default=None, description="Requests admitted per day (starting at 00:00 UTC)."
    )
    tokens_per_minute: PositiveLimit | None = Field(
        default=None,
        description="Tokens per clock minute: each request reserves its worst case "
        "(prompt plus max output) at admission and is settled to its real usage after.",
    )

    def limits(self, scope: str) -> tuple[Limit, ...]:
        """These limits as ``Limit``s of ``scope`` (e.g. ``"key:<id>"``), for ``admit``."""
        wanted = (
            (LimitKind.REQUESTS, Window.MINUTE, self.per_minute),
            (LimitKind.REQUESTS, Window.DAY, self.per_day),
            (LimitKind.TOKENS, Window.MINUTE, self.tokens_per_minute),
        )
        return tuple(Limit(scope, kind, window, n) for kind, window, n in wanted if n is not None)


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit's window as of a decision, for the ``x-ratelimit-*`` headers.

    ``used`` counts this request when it was admitted and not when it was refused;
    ``reset_s`` is the time from the decision to the window's end.
    """

    limit: Limit
    used: int
    window_start: int
    reset_s: float

    @property
    def remaining(self) -> int:
        """What the window still admits (never negative)."""
        return max(0, self.limit.amount - self.used)


@dataclass(slots=True)
class Reservation:
    """An admitted request's token reservation, to ``settle`` once its usage is known."""

    tokens: int
    hits: tuple[Hit, ...]  # one per token limit, each in the window it was counted in
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of ``RateLimiter.admit``.

    ``allowed`` false with ``refused_by`` set: a limit refused (``retry_after_s`` the
    true wait, or ``None`` when the request can never fit); with ``unavailable`` set:
    a fail-closed kind could not be checked. ``unchecked`` names the kinds whose
    counters did not answer (admitted anyway when they fail open). ``tokens`` is the
    reservation the request asked for.
    """

    allowed: bool
    states: tuple[LimitState, ...] = ()
    refused_by: Limit | None = None
    retry_after_s: int | None = None
    tokens: int = 0
    unchecked: frozenset[LimitKind] = frozenset()
    unavailable: bool = False
    reservation: Reservation | None = field(default=None, compare=False)
    #: An admitted decision's increments (hit, cost), for ``RateLimiter.release``.
    increments: tuple[tuple[Hit, int], ...] = field(default=(), compare=False, repr=False)

    def tightest(self, kind: LimitKind) -> LimitState | None:
        """The state of ``kind`` with the least remaining (then the latest reset)."""
        states = [s for s in self.states if s.limit.kind is kind]
        return min(states, key=lambda s: (s.remaining, -s.reset_s), default=None)

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers for the kinds that were checked, and ``retry-after``.

        ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` from the tightest
        limit of each kind (reset as ``1s``, ``6m0s``, ``23h59m59s``).
        """
        out: dict[str, str] = {}
        for kind in LimitKind:
            state = self.tightest(kind)
            if state is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(state.limit.amount)
                out[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
                out[f"x-ratelimit-reset-{kind}"] = format_reset(state.reset_s)
        if self.retry_after_s is not None:
            out["retry-after"] = str(self.retry_after_s)
        return out

    def error(self) -> GatewayError | None:
        """The error to answer a refusal with (``None`` when allowed)."""
        if self.allowed:
            return None
        if self.refused_by is None:
            return ServiceUnavailable(
                "Rate limits cannot be checked right now. Please retry.",
                code="rate_limiter_unavailable",
            )
        limit = self.refused_by
        requested = 1 if limit.kind is LimitKind.REQUESTS else self.tokens
        who = limit.scope.replace(":", " ", 1)
        if self.retry_after_s is None:
            return LimitReached(
                f"Request too large for {who} on {limit.describe()}: Limit {limit.amount}, "
                f"Requested {requested}. The input or output tokens must be reduced in "
                "order to run successfully.",
                kind=limit.kind,
                retry_after=None,
            )
        state = next((s for s in self.states if s.limit == limit), None)
        used = f", Used {state.used}" if state is not None else ""
        return LimitReached(
            f"Rate limit reached for {who} on {limit.describe()}: Limit {limit.amount}"
            f"{used}, Requested {requested}. Please try again in {self.retry_after_s}s.",
            kind=limit.kind,
            retry_after=self.retry_after_s,
        )


_UNLIMITED = Decision(allowed=True)


class LimitReached(RateLimited):
    """A rate limit refused the request (429): OpenAI's ``type`` names what was counted.

    OpenAI answers ``{"type": "requests" | "tokens", "code": "rate_limit_exceeded"}``;
    ``kind`` is the refusing limit's, ``retry_after`` as on ``RateLimited``.
    """

    def __init__(self, message: str, *, kind: LimitKind, retry_after: int | None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.kind = kind
        self.error_type = kind.value


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's reset headers write it: ``250ms``, ``1s``, ``6m0s``, ``2h0m5s``.

    Whole seconds are rounded up, so the window has surely reset when the time is up.
    """
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _one_per_counter(limits: Sequence[Limit]) -> list[Limit]:
    """The limits with one per counter (scope, kind, window): the smallest amount wins."""
    by_counter: dict[tuple[str, LimitKind, Window], Limit] = {}
    for limit in limits:
        key = (limit.scope, limit.kind, limit.window)
        if key not in by_counter or limit.amount < by_counter[key].amount:
            by_counter[key] = limit
    return list(by_counter.values())


@dataclass(frozen=True, slots=True)
class _Outcome:
    limit: Limit
    cost: int
    fits: bool
    hit: Hit


class RateLimiter:
    """Admits requests against limits whose counters every edge shares (module docstring).

    Built once per edge in ``main`` on the edge's NATS connection; ``start`` declares
    the counter streams. ``clock`` (wall time) decides the windows; tests inject one.
    """

    def __init__(
        self,
        nc: Client,
        *,
        metrics: EdgeMetrics | None = None,
        timeout_s: float = 0.1,
        fail_closed: frozenset[LimitKind] = frozenset(),
        outage_backoff_s: float = 1.0,
        clock: Clock = time.time,
        stream_replicas: int = 1,
    ) -> None:
        self._nc = nc
        self._stream_replicas = stream_replicas  # NATS_STREAM_REPLICAS
        self._storage = NatsCounterStorage(nc, timeout_s=timeout_s, clock=clock)
        self._strategy = FixedWindowRateLimiter(self._storage)
        self._metrics = metrics
        self._fail_closed = fail_closed
        self._outage_backoff_s = outage_backoff_s
        self._clock = clock
        self._outage_until: float | None = None  # monotonic; None while the counters answer

    @property
    def storage(self) -> NatsCounterStorage:
        """The counters (``limits`` storage), e.g. for ``FixedWindowRateLimiter.test``."""
        return self._storage

    async def start(self) -> None:
        """Declare the counter streams (idempotent; needs nats-server 2.12+)."""
        await ensure_streams(
            self._nc.jetstream(timeout=5.0), RATELIMIT_STREAMS, replicas=self._stream_replicas
        )

    async def admit(self, limits: Sequence[Limit], *, tokens: int = 0) -> Decision:
        """Count one request against ``limits``: 1 on request limits, ``tokens`` on token ones.

        No limits: allowed at once, no NATS call. Never raises for NATS trouble (that is
        the fail mode); ``ValueError`` for a negative ``tokens``.
        """
        if not limits:
            return _UNLIMITED
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        limits = _one_per_counter(limits)
        too_large = next(
            (x for x in limits if x.kind is LimitKind.TOKENS and tokens > x.amount), None
        )
        if too_large is not None:
            self._count_refusal(too_large)
            return Decision(allowed=False, refused_by=too_large, tokens=tokens)
        if self._in_outage():
            return self._unchecked({x.kind for x in limits}, states=())
        results = await asyncio.gather(
            *(self._hit(x, 1 if x.kind is LimitKind.REQUESTS else tokens) for x in limits),
            return_exceptions=True,
        )
        outcomes: list[_Outcome] = []
        failed: set[LimitKind] = set()
        for limit, result in zip(limits, results, strict=True):
            if isinstance(result, CountersUnavailable):
                failed.add(limit.kind)
                self._enter_outage(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes.append(result)
        if not failed:
            self._leave_outage()
        refused = [o for o in outcomes if not o.fits]
        now = self._clock()
        if refused or failed & self._fail_closed:
            await self._roll_back(outcomes)
            states = tuple(self._state(o, now, admitted=False) for o in outcomes)
            if not refused:
                return self._unchecked(failed, states=states)
            for kind in failed:
                self._count_unavailable(kind)
            worst = max(refused, key=lambda o: o.hit.window_end)
            self._count_refusal(worst.limit)
            return Decision(
                allowed=False,
                states=states,
                refused_by=worst.limit,
                retry_after_s=max(1, math.ceil(worst.hit.window_end - now)),
                tokens=tokens,
                unchecked=frozenset(failed),
            )
        for kind in failed:
            self._count_unavailable(kind)
        token_hits = tuple(o.hit for o in outcomes if o.limit.kind is LimitKind.TOKENS)
        return Decision(
            allowed=True,
            states=tuple(self._state(o, now, admitted=True) for o in outcomes),
            tokens=tokens,
            unchecked=frozenset(failed),
            reservation=Reservation(tokens, token_hits) if token_hits else None,
            increments=tuple((o.hit, o.cost) for o in outcomes if o.cost),
        )

    async def release(self, decision: Decision) -> None:
        """Take back every increment of an admitted ``decision`` still in its window.

        For a request admitted by one step and refused by a later part of the same
        limit check (the Gateway API counts requests first and reserves tokens once
        its prompt is built): a refused request consumes nothing. Its reservation is
        marked settled, so a later ``settle`` does nothing.
        """
        if decision.reservation is not None:
            decision.reservation.settled = True
        now = self._clock()
        live = [(hit, cost) for hit, cost in decision.increments if now < hit.window_end]
        if not live:
            return
        results = await asyncio.gather(
            *(
                self._storage.add(h.key, window_s=h.window_s, start=h.window_start, amount=-cost)
                for h, cost in live
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, CountersUnavailable):
                log.warning("rate-limit release lost: %s", result)
            elif isinstance(result, BaseException):
                raise result

    async def settle(self, reservation: Reservation | None, tokens_used: int) -> None:
        """Correct each token window of an admitted request by ``tokens_used - reserved``.

        Call once per admitted request when its usage is known (a repeat does nothing).
        A window that has already ended is left alone (the next one started at zero
        anyway); a counter that does not answer keeps the reservation (logged, counted).
        """
        if reservation is None or reservation.settled or not reservation.hits:
            return
        if tokens_used < 0:
            raise ValueError("tokens_used must be >= 0")
        reservation.settled = True
        delta = tokens_used - reservation.tokens
        now = self._clock()
        live = [hit for hit in reservation.hits if now < hit.window_end]
        if delta == 0 or not live:
            return
        results = await asyncio.gather(
            *(
                self._storage.add(h.key, window_s=h.window_s, start=h.window_start, amount=delta)
                for h in live
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, CountersUnavailable):
                log.warning("token settle of %+d not counted: %s", delta, result)
                self._count_unavailable(LimitKind.TOKENS)
            elif isinstance(result, BaseException):
                raise result

    async def _hit(self, limit: Limit, cost: int) -> _Outcome:
        item = _ITEMS[limit.window](limit.amount, namespace=_NAMESPACE)
        fits = await self._strategy.hit(item, limit.scope, limit.kind.value, cost=cost)
        hit = self._storage.take_hit(item.key_for(limit.scope, limit.kind.value))
        assert hit is not None  # taken before any await: this call's own increment
        return _Outcome(limit, cost, fits, hit)

    async def _roll_back(self, outcomes: Sequence[_Outcome]) -> None:
        """Take back this request's increments, each in the window it landed in."""
        results = await asyncio.gather(
            *(
                self._storage.add(
                    o.hit.key, window_s=o.hit.window_s, start=o.hit.window_start, amount=-o.cost
                )
                for o in outcomes
                if o.cost
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, CountersUnavailable):
                # The refused request stays counted: conservative, never over-admits.
                log.warning("rate-limit rollback lost: %s", result)
            elif isinstance(result, BaseException):
                raise result

    def _state(self, o: _Outcome, now: float, *, admitted: bool) -> LimitState:
        used = o.hit.value if admitted else o.hit.value - o.cost
        return LimitState(o.limit, used, o.hit.window_start, max(0.0, o.hit.window_end - now))

    def _unchecked(self, kinds: set[LimitKind], *, states: tuple[LimitState, ...]) -> Decision:
        for kind in kinds:
            self._count_unavailable(kind)
        closed = bool(kinds & self._fail_closed)
        return Decision(
            allowed=not closed, states=states, unchecked=frozenset(kinds), unavailable=closed
        )

    def _in_outage(self) -> bool:
        if self._outage_until is None:
            return False
        return time.monotonic() < self._outage_until

    def _enter_outage(self, cause: CountersUnavailable) -> None:
        if self._outage_until is None:
            log.warning(
                "rate-limit counters unavailable (%s): failing %s for now",
                cause,
                ", ".join(
                    f"{kind} {'closed' if kind in self._fail_closed else 'open'}"
                    for kind in LimitKind
                ),
            )
        self._outage_until = time.monotonic() + self._outage_backoff_s

    def _leave_outage(self) -> None:
        if self._outage_until is not None:
            log.info("rate-limit counters answer again")
            self._outage_until = None

    def _count_refusal(self, limit: Limit) -> None:
        if self._metrics is not None:
            self._metrics.count_ratelimited(scope_kind=limit.scope_kind, window=limit.window)

    def _count_unavailable(self, kind: LimitKind) -> None:
        if self._metrics is not None:
            self._metrics.count_ratelimit_unavailable(kind=kind)
