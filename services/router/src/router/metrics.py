"""The router's Prometheus metrics, registered on a registry ``main`` passes in.

Nothing is registered at import: ``RouterMetrics(registry)`` is built once by
``main`` (the process registry) or per test (a fresh ``CollectorRegistry``).
Label values come from the catalog (provider, deployment, model) or from our
error codes, so cardinality is bounded by configuration: a custom upstream's
base URL (a managed credential's) is never a label value. A model name that
reaches a label is capped as well (``BoundedLabel``: the first 200, then
``other``), since credentials and passthrough calls may name models the catalog
does not list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from gateway_common.metrics import BoundedLabel

__all__ = ["RouterMetrics"]

M = TypeVar("M", bound=MetricWrapperBase)

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class RouterMetrics:
    """Counters and histograms the router updates; one instance per process.

    ``child`` is ``metric.labels(*values)`` remembered: the hot path updates the
    same few children on every call, and ``labels`` validates and locks each time.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}
        #: Caps the distinct values of every ``model`` label below.
        self.model_label = BoundedLabel()
        self.requests = Counter(
            "switchyard_router_requests",
            "Provider calls finished (after failover), by model, provider and status "
            "(ok, error or cancelled).",
            ["model", "provider", "status"],
            registry=registry,
        )
        self.tokens = Counter(
            "switchyard_router_tokens",
            "Tokens the providers reported, by model, provider and direction (input or output).",
            ["model", "provider", "direction"],
            registry=registry,
        )
        self.attempts = Counter(
            "switchyard_router_upstream_attempts",
            "Provider calls attempted, by deployment and outcome (ok or our error code).",
            ["provider", "deployment", "outcome"],
            registry=registry,
        )
        self.failovers = Counter(
            "switchyard_router_failovers",
            "Moves to the next deployment of a model after a retryable failure.",
            ["model"],
            registry=registry,
        )
        self.retries = Counter(
            "switchyard_router_retries",
            "Second and later attempts on the same deployment within one call (after a backoff).",
            ["model"],
            registry=registry,
        )
        self.retry_budget_exhausted = Counter(
            "switchyard_router_retry_budget_exhausted",
            "Calls that stopped trying because the replica's retry budget was spent.",
            ["model"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "switchyard_router_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            ["provider", "deployment"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "switchyard_router_breaker_transitions",
            "Circuit breaker state changes per deployment, by the state entered.",
            ["provider", "deployment", "state"],
            registry=registry,
        )
        self.custom_breakers_open = Gauge(
            "switchyard_router_custom_upstream_breakers_open",
            "Custom-upstream (credential base URL) circuit breakers not closed, per deployment.",
            ["provider", "deployment"],
            registry=registry,
        )
        self.custom_breaker_transitions = Counter(
            "switchyard_router_custom_upstream_breaker_transitions",
            "Custom-upstream circuit breaker state changes per deployment, by the state entered.",
            ["provider", "deployment", "state"],
            registry=registry,
        )
        self.custom_breakers = Gauge(
            "switchyard_router_custom_upstream_breakers",
            "Custom-upstream circuit breakers kept (one per deployment and base URL, bounded).",
            registry=registry,
        )
        self.inflight = Gauge(
            "switchyard_router_inflight",
            "Provider calls in flight per deployment (a stream until it closes).",
            ["provider", "deployment"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "switchyard_router_upstream_latency_seconds",
            "Time to a provider's answer (unary) or first chunk (stream), successful attempts.",
            ["provider", "deployment", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.usage_publish_retries = Counter(
            "switchyard_router_usage_publish_retries",
            "Usage publishes sent again (same Nats-Msg-Id) after an ack did not come.",
            registry=registry,
        )
        self.usage_outbox = Counter(
            "switchyard_router_usage_outbox",
            "Usage events kept in the local outbox (NATS unreachable) and replayed from it.",
            ["event"],
            registry=registry,
        )
        self.usage_unrecorded = Counter(
            "switchyard_router_usage_unrecorded",
            "Provider calls for which no usage event was published, by reason.",
            ["reason"],
            registry=registry,
        )
        self.catalog_reloads = Counter(
            "switchyard_router_catalog_reloads",
            "Catalog file reloads, by result (ok or error).",
            ["result"],
            registry=registry,
        )

    def declare_models(self, models: Iterable[str]) -> None:
        """Export the per-model counters at 0 for every catalog model (on each catalog load),
        so dashboards and alerts see a failover or retry rate of 0 rather than no data."""
        for model in models:
            label = self.model_label(model)
            for metric in (self.failovers, self.retries, self.retry_budget_exhausted):
                metric.labels(label)

    def child(self, metric: M, *values: str) -> M:
        """``metric.labels(*values)``, built once per label set (bounded by the catalog)."""
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[no-any-return]
