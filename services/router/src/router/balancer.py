"""Load balancing: the order in which one call tries a route's deployments.

Deployments fall into priority groups (``Deployment.priority``; unset means
the deployment's position in the list, so a plain list is a plain ordered
failover). Groups are tried lowest priority first. Within a group:

1. least loaded first: the fewest calls in flight per unit of ``weight``;
2. among equally loaded ones, smooth weighted round robin (nginx's), so that
   sequential traffic is spread exactly in the ratio of the weights
   (weights 3 and 1: a, a, b, a, ...);
3. the rest of the group follows, least loaded first, as its failover order;
   ``weight: 0`` deployments come last and only serve when the others failed.

In-flight counts are per deployment (``provider/deployment``) and span a
whole stream, from its first attempt to its close; they are exported as
``switchyard_router_inflight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from prometheus_client import Gauge

from .metrics import RouterMetrics
from .routing import Candidate, Route, priority

__all__ = ["Balancer"]


class Balancer:
    """Orders candidates and counts calls in flight; one per process. Single event loop."""

    def __init__(self, metrics: RouterMetrics) -> None:
        self._metrics = metrics
        self._inflight: dict[str, int] = {}
        self._gauges: dict[str, Gauge] = {}
        #: Smooth weighted round robin state, by (model, deployment key).
        self._current: dict[tuple[str, str], float] = {}

    def inflight(self, key: str) -> int:
        """Calls in flight on deployment ``key``."""
        return self._inflight.get(key, 0)

    def acquire(self, key: str) -> None:
        """An attempt on ``key`` starts."""
        self._inflight[key] = self._inflight.get(key, 0) + 1
        self._gauge(key).inc()

    def release(self, key: str) -> None:
        """An attempt on ``key`` (or the stream it opened) ended."""
        self._inflight[key] -= 1
        self._gauge(key).dec()

    def order(self, route: Route) -> list[Candidate]:
        """The route's candidates in the order this call should try them."""
        candidates = route.candidates
        if len(candidates) == 1:
            return [candidates[0]]
        ranked = sorted(enumerate(candidates), key=priority)
        plan: list[Candidate] = []
        for _, members in groupby(ranked, key=priority):
            group = [candidate for _, candidate in members]
            plan.extend(group if len(group) == 1 else self._balance(route.model, group))
        return plan

    def _balance(self, model: str, group: Sequence[Candidate]) -> list[Candidate]:
        weighted = [c for c in group if c.deployment.weight > 0]
        idle = [c for c in group if c.deployment.weight == 0]
        if not weighted:
            return list(group)
        weighted.sort(key=self._load)  # stable: list order breaks the remaining ties
        lightest = self._load(weighted[0])
        tied = [c for c in weighted if self._load(c) == lightest]
        first = self._round_robin(model, tied) if len(tied) > 1 else tied[0]
        return [first, *(c for c in weighted if c is not first), *idle]

    def _load(self, candidate: Candidate) -> float:
        return self._inflight.get(candidate.key, 0) / candidate.deployment.weight

    def _round_robin(self, model: str, tied: Sequence[Candidate]) -> Candidate:
        current = self._current
        total = 0
        best, best_score = tied[0], float("-inf")
        for candidate in tied:
            weight = candidate.deployment.weight
            total += weight
            slot = (model, candidate.key)
            score = current[slot] = current.get(slot, 0.0) + weight
            if score > best_score:
                best, best_score = candidate, score
        current[(model, best.key)] -= total
        return best

    def _gauge(self, key: str) -> Gauge:
        gauge = self._gauges.get(key)
        if gauge is None:
            provider, _, deployment = key.partition("/")
            gauge = self._gauges[key] = self._metrics.inflight.labels(provider, deployment)
        return gauge
