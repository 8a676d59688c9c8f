"""The retry budget: retries may add only a bounded share to the call rate of a router replica.

Over any window of ``window_s`` seconds (``resilience.retry_budget`` in the
catalog), a replica makes at most

    ratio * calls + min_per_s * window_s

retries, where a retry is every attempt of a call after its first (a failover
to another deployment as much as a second try of the same one). With the
defaults, retries add at most 20% to the load a provider outage leaves, plus
a floor of 10 per second so that low traffic can always fail over. A call
that finds the budget spent stops and reports the attempts it made;
``switchyard_router_retry_budget_exhausted_total`` counts such calls.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway_common.catalog import RetryBudgetPolicy

from .window import SlidingWindow

__all__ = ["RetryBudget"]


class RetryBudget:
    """Counts calls and retries of this process; one per process. Single event loop."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._window: SlidingWindow | None = None

    def called(self, policy: RetryBudgetPolicy) -> None:
        """A call started (its first attempt is never a retry)."""
        self._at(policy).add(self._clock(), a=1)

    def try_retry(self, policy: RetryBudgetPolicy) -> bool:
        """Spend one retry if the budget allows it; ``False`` (nothing spent) if not."""
        window = self._at(policy)
        now = self._clock()
        calls, retries = window.totals(now)
        if retries + 1 > policy.ratio * calls + policy.min_per_s * policy.window_s:
            return False
        window.add(now, b=1)
        return True

    def _at(self, policy: RetryBudgetPolicy) -> SlidingWindow:
        # A reload that changes the window starts counting afresh.
        if self._window is None or self._window.span != policy.window_s:
            self._window = SlidingWindow(policy.window_s)
        return self._window
