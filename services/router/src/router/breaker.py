"""Circuit breakers, so that an upstream that keeps failing is skipped.

    CLOSED --(N retryable failures in a row, or failure rate >= r over the window)--> OPEN
    OPEN   --(cooldown_s elapsed; the next call becomes the one probe)-------------> HALF_OPEN
    HALF_OPEN --probe succeeds--> CLOSED          HALF_OPEN --probe fails--> OPEN (cooldown anew)

One call, one verdict. A stream is judged a success when its first chunk
arrives (failover commits there); if it then breaks mid-way, that verdict is
revised to a failure (``broke_after_commit``), never counted twice.

Only retryable failures (connection errors, timeouts, 429, 5xx) count against
a breaker: a 4xx is the request's fault and counts as a healthy answer. An
attempt that ends without a verdict (the caller went away) releases a
half-open probe slot without changing the state, so the next call probes.
A breaker remembers the status of the failure that opened it, so that a
skipped deployment reports the same kind of failure (a rate-limited
deployment keeps answering 429, not 502, while its breaker is open).

Which breaker (``Breakers.of``). An attempt on the catalog's own upstream
uses its deployment's breaker, shared by every such call. An attempt that a
managed credential sent to its own base URL (``Candidate.upstream``) uses the
breaker of that (deployment, base URL) pair: one project's broken URL opens
only its own breaker, the deployment's shared breaker neither counts those
failures nor skips those attempts, and failover otherwise treats both kinds
alike. Custom-upstream breakers are kept for at most ``max_custom`` pairs;
a new pair beyond that drops the least recently used *closed* one (it holds
no more than a few recent verdicts), or, when every one is open, the least
recently used of all: the bound is hard, and a dropped open breaker only
lets its URL be tried again.

Settings and reloads. Each verdict is given its candidate's ``BreakerPolicy``
(``Catalog.breaker_policy``: ``resilience.breaker`` with the provider's own
``breaker`` block applied) and reads the thresholds then. A catalog reload
therefore keeps every breaker's state (open stays open, counts stay) and
the new settings apply from the next verdict on: an open breaker's cool-down
runs from when it opened, with the new ``cooldown_s``; a changed
``window_s`` restarts the failure-rate window; a lower
``consecutive_failures`` opens on the next failure once the count reaches
it. Breakers live as long as the process.

Metrics. A deployment breaker's state is the gauge
``switchyard_router_breaker_state{provider,deployment}`` (0 closed,
1 half-open, 2 open) with ``switchyard_router_breaker_transitions``. Custom
upstreams get no label of their own (a URL label would be unbounded):
``switchyard_router_custom_upstream_breakers_open{provider,deployment}`` counts
those not closed, ``..._custom_upstream_breaker_transitions`` their state
changes, and ``..._custom_upstream_breakers`` how many pairs are kept.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from gateway_common.catalog import BreakerPolicy

from .metrics import RouterMetrics
from .routing import Candidate
from .window import SlidingWindow

__all__ = ["DEFAULT_MAX_CUSTOM", "Breaker", "Breakers", "State"]

log = logging.getLogger(__name__)

#: Custom-upstream (deployment, base URL) breakers kept at once by default.
DEFAULT_MAX_CUSTOM = 1024


class State(enum.IntEnum):
    """Breaker states; the values are what the state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class _Report(Protocol):
    """Where a breaker reports its state changes (metrics)."""

    def moved(self, old: State, new: State) -> None: ...

    def dropped(self, state: State) -> None: ...


class _DeploymentReport:
    """A deployment breaker's own gauge and transition counters."""

    __slots__ = ("_gauge", "_transitions")

    def __init__(self, metrics: RouterMetrics, provider: str, deployment: str) -> None:
        self._gauge = metrics.breaker_state.labels(provider, deployment)
        self._gauge.set(State.CLOSED)
        self._transitions = _transitions(metrics.breaker_transitions, provider, deployment)

    def moved(self, old: State, new: State) -> None:
        self._gauge.set(new)
        self._transitions[new].inc()

    def dropped(self, state: State) -> None:  # deployment breakers are never dropped
        pass


class _CustomReport:
    """The custom-upstream breakers of one deployment, counted together."""

    __slots__ = ("_open", "_transitions")

    def __init__(self, metrics: RouterMetrics, provider: str, deployment: str) -> None:
        self._open = metrics.custom_breakers_open.labels(provider, deployment)
        self._transitions = _transitions(metrics.custom_breaker_transitions, provider, deployment)

    def moved(self, old: State, new: State) -> None:
        self._transitions[new].inc()
        if old is State.CLOSED:
            self._open.inc()
        elif new is State.CLOSED:
            self._open.dec()

    def dropped(self, state: State) -> None:
        if state is not State.CLOSED:
            self._open.dec()


class _Silent:
    """What a dropped breaker reports to: nothing (an attempt may still hold it)."""

    __slots__ = ()

    def moved(self, old: State, new: State) -> None:
        pass

    def dropped(self, state: State) -> None:
        pass


_SILENT = _Silent()


def _transitions(counter: Counter, provider: str, deployment: str) -> dict[State, Counter]:
    return {state: counter.labels(provider, deployment, state.name.lower()) for state in State}


class Breaker:
    """One breaker (a deployment's, or a custom upstream's). Single event loop: no locking.

    ``admit`` asks whether an attempt may start now; every admitted attempt
    must end in exactly one of ``succeeded``, ``failed`` or ``abandoned``.
    ``name`` is what logs show (never a full URL: a custom upstream shows its origin).
    """

    __slots__ = (
        "_clock",
        "_consecutive",
        "_opened_at",
        "_opened_by",
        "_probing",
        "_report",
        "_window",
        "name",
        "state",
    )

    def __init__(self, name: str, clock: Callable[[], float], report: _Report) -> None:
        self.name = name
        self.state = State.CLOSED
        self._clock = clock
        self._report = report
        self._consecutive = 0
        #: Calls and failures of recent verdicts, for the failure rate.
        self._window: SlidingWindow | None = None
        self._opened_at = 0.0
        self._opened_by = 502
        self._probing = False

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

    def broke_after_commit(self, policy: BreakerPolicy, status: int = 502) -> None:
        """A stream already counted as a success at its first chunk failed mid-way.

        Revises that call's verdict instead of adding a second one: the window
        keeps one call per stream (now a failure), so a deployment that breaks
        every stream shows a failure rate of 100 %, not 50 %. (The commit's
        success already reset the consecutive count, so it is the failure rate,
        not ``consecutive_failures``, that opens on streams breaking mid-way.)
        """
        if self.state is not State.CLOSED:
            return  # opened (or probing) since the commit: the later verdicts rule
        self._consecutive += 1
        rate = self._note(policy, failed=True, new_call=False)
        if self._consecutive >= policy.consecutive_failures or rate >= policy.failure_rate:
            self._open(status)

    def abandoned(self) -> None:
        """The attempt ended without a verdict (cancelled): free the probe slot."""
        self._probing = False

    def _detach(self) -> None:
        """Stop reporting (``Breakers`` dropped this breaker; an attempt may still hold it)."""
        self._report.dropped(self.state)
        self._report = _SILENT

    def _note(self, policy: BreakerPolicy, *, failed: bool, new_call: bool = True) -> float:
        """Record a verdict (``new_call=False``: revise one already counted to a failure);
        return the failure rate over the window (0 below ``min_calls``)."""
        now = self._clock()
        window = self._window
        if window is None or window.span != policy.window_s:
            window = self._window = SlidingWindow(policy.window_s)
        window.add(now, a=int(new_call), b=int(failed))
        calls, failures = window.totals(now)
        return min(1.0, failures / calls) if calls >= policy.min_calls else 0.0

    def _open(self, status: int) -> None:
        self._opened_at = self._clock()
        self._opened_by = status
        self._consecutive = 0
        self._window = None
        self._move(State.OPEN)

    def _move(self, state: State) -> None:
        if state is self.state:
            return
        log.warning("breaker %s: %s -> %s", self.name, self.state.name, state.name)
        old, self.state = self.state, state
        self._report.moved(old, state)


def _origin(base_url: str) -> str:
    """``scheme://host[:port]`` of ``base_url``: enough to tell upstreams apart in a log."""
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class Breakers:
    """Every breaker of the process (module docstring: which breaker); one per process."""

    def __init__(
        self,
        metrics: RouterMetrics,
        clock: Callable[[], float],
        *,
        max_custom: int = DEFAULT_MAX_CUSTOM,
    ) -> None:
        if max_custom < 1:
            raise ValueError("max_custom must be at least 1")
        self._metrics = metrics
        self._clock = clock
        self._max_custom = max_custom
        self._by_key: dict[str, Breaker] = {}
        #: (deployment key, base URL) -> breaker, least recently used first.
        self._custom: OrderedDict[tuple[str, str], Breaker] = OrderedDict()
        #: Deployment key -> the report its custom-upstream breakers share.
        self._custom_reports: dict[str, _CustomReport] = {}
        self._custom_size: Gauge = metrics.custom_breakers

    def __getitem__(self, key: str) -> Breaker:
        """The shared breaker of deployment ``key`` (``provider/deployment``), created closed."""
        breaker = self._by_key.get(key)
        if breaker is None:
            provider, _, deployment = key.partition("/")
            report = _DeploymentReport(self._metrics, provider, deployment)
            breaker = self._by_key[key] = Breaker(key, self._clock, report)
        return breaker

    def of(self, candidate: Candidate) -> Breaker:
        """The breaker an attempt on ``candidate`` answers to (its custom upstream's, if any)."""
        if candidate.upstream is None:
            return self[candidate.key]
        return self.custom(candidate.key, candidate.upstream)

    def custom(self, key: str, base_url: str) -> Breaker:
        """The breaker of deployment ``key`` reached at ``base_url``, created closed; marks it
        the most recently used, and may drop another to stay within ``max_custom``."""
        pair = (key, base_url)
        breaker = self._custom.get(pair)
        if breaker is not None:
            self._custom.move_to_end(pair)
            return breaker
        report = self._custom_reports.get(key)
        if report is None:
            provider, _, deployment = key.partition("/")
            report = self._custom_reports[key] = _CustomReport(self._metrics, provider, deployment)
        if len(self._custom) >= self._max_custom:
            self._drop_one()
        breaker = self._custom[pair] = Breaker(
            f"{key} via {_origin(base_url)}", self._clock, report
        )
        self._custom_size.set(len(self._custom))
        return breaker

    def custom_count(self) -> int:
        """How many custom-upstream breakers are kept."""
        return len(self._custom)

    def _drop_one(self) -> None:
        victim = next(
            (pair for pair, b in self._custom.items() if b.state is State.CLOSED),
            next(iter(self._custom)),
        )
        self._custom.pop(victim)._detach()
