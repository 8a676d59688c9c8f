"""Circuit breakers, one per deployment, so that a deployment that keeps failing is skipped.

    CLOSED --(N retryable failures in a row, or failure rate >= r over the window)--> OPEN
    OPEN   --(cooldown_s elapsed; the next call becomes the one probe)-------------> HALF_OPEN
    HALF_OPEN --probe succeeds--> CLOSED          HALF_OPEN --probe fails--> OPEN (cooldown anew)

Only retryable failures (connection errors, timeouts, 429, 5xx) count against
a deployment: a 4xx is the request's fault and counts as a healthy answer. An
attempt that ends without a verdict (the caller went away) releases a
half-open probe slot without changing the state, so the next call probes.
A breaker remembers the status of the failure that opened it, so that a
skipped deployment reports the same kind of failure (a rate-limited
deployment keeps answering 429, not 502, while its breaker is open).

Thresholds come from the catalog's ``resilience.breaker`` and are read on
every verdict, so a catalog reload applies to breakers that already exist;
breaker state itself lives as long as the process (a reload keeps it).
The state of each breaker is exported as the gauge
``switchyard_router_breaker_state`` (0 closed, 1 half-open, 2 open).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from gateway_common.catalog import BreakerPolicy

from .metrics import RouterMetrics
from .window import SlidingWindow

__all__ = ["Breaker", "Breakers", "State"]

log = logging.getLogger(__name__)


class State(enum.IntEnum):
    """Breaker states; the values are what the state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """The breaker of one deployment. Single event loop: no locking.

    ``admit`` asks whether an attempt may start now; every admitted attempt
    must end in exactly one of ``succeeded``, ``failed`` or ``abandoned``.
    """

    __slots__ = (
        "_clock",
        "_consecutive",
        "_gauge",
        "_opened_at",
        "_opened_by",
        "_probing",
        "_transitions",
        "_window",
        "key",
        "state",
    )

    def __init__(self, key: str, metrics: RouterMetrics, clock: Callable[[], float]) -> None:
        provider, _, deployment = key.partition("/")
        self.key = key
        self.state = State.CLOSED
        self._clock = clock
        self._consecutive = 0
        #: Calls and failures of recent verdicts, for the failure rate.
        self._window: SlidingWindow | None = None
        self._opened_at = 0.0
        self._opened_by = 502
        self._probing = False
        self._gauge = metrics.breaker_state.labels(provider, deployment)
        self._gauge.set(State.CLOSED)
        self._transitions = {
            state: metrics.breaker_transitions.labels(provider, deployment, state.name.lower())
            for state in State
        }

    def retry_in(self, policy: BreakerPolicy) -> float:
        """Seconds until an open breaker lets a probe through (0: it would admit now)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self._opened_at + policy.cooldown_s - self._clock())

    def admit(self, policy: BreakerPolicy) -> bool:
        """Whether an attempt may start; an admitted half-open attempt is the probe."""
        if self.state is State.OPEN:
            if self.retry_in(policy) > 0:
                return False
            self._move(State.HALF_OPEN)
        if self.state is State.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def succeeded(self, policy: BreakerPolicy) -> None:
        """The attempt got an answer (a success, or a client error that is not ours)."""
        self._probing = False
        self._consecutive = 0
        if self.state is State.HALF_OPEN:
            self._window = None
            self._move(State.CLOSED)
            return
        self._note(policy, failed=False)

    @property
    def opened_by(self) -> int:
        """HTTP status of the failure that last opened the breaker (what a skip reports)."""
        return self._opened_by

    def failed(self, policy: BreakerPolicy, status: int = 502) -> None:
        """The attempt failed with a retryable error whose HTTP status was ``status``."""
        self._probing = False
        if self.state is State.HALF_OPEN:
            self._open(status)
            return
        self._consecutive += 1
        rate = self._note(policy, failed=True)
        if self.state is State.CLOSED and (
            self._consecutive >= policy.consecutive_failures or rate >= policy.failure_rate
        ):
            self._open(status)

    def abandoned(self) -> None:
        """The attempt ended without a verdict (cancelled): free the probe slot."""
        self._probing = False

    def _note(self, policy: BreakerPolicy, *, failed: bool) -> float:
        """Record a verdict; return the failure rate over the window (0 below ``min_calls``)."""
        now = self._clock()
        window = self._window
        if window is None or window.span != policy.window_s:
            window = self._window = SlidingWindow(policy.window_s)
        window.add(now, a=1, b=int(failed))
        calls, failures = window.totals(now)
        return failures / calls if calls >= policy.min_calls else 0.0

    def _open(self, status: int) -> None:
        self._opened_at = self._clock()
        self._opened_by = status
        self._consecutive = 0
        self._window = None
        self._move(State.OPEN)

    def _move(self, state: State) -> None:
        if state is self.state:
            return
        log.warning("breaker %s: %s -> %s", self.key, self.state.name, state.name)
        self.state = state
        self._gauge.set(state)
        self._transitions[state].inc()


class Breakers:
    """Every deployment's breaker, by ``provider/deployment``; one per process."""

    def __init__(self, metrics: RouterMetrics, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._clock = clock
        self._by_key: dict[str, Breaker] = {}

    def __getitem__(self, key: str) -> Breaker:
        """The breaker of ``key``, created closed on first use."""
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = Breaker(key, self._metrics, self._clock)
        return breaker
