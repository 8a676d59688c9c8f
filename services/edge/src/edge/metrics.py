"""Prometheus metrics of one edge app, on a registry of its own (no process globals).

switchyard_http_requests_total{route,method,status}     counter (method: the standard
    methods, any other, e.g. WebDAV's, is ``other``; route: ``unmatched`` for unknown URLs)
switchyard_http_request_duration_seconds{route}         histogram (whole response)
switchyard_gateway_overhead_seconds{operation}          histogram: time the gateway
    adds to a routed call = time to response (or first stream event) minus the
    router's reported upstream time
switchyard_edge_ratelimited_total{scope_kind,window}    counter: requests a rate limit
    refused (scope_kind key|project|endpoint|other, window minute|day)
switchyard_edge_ratelimit_unavailable_total{kind}       counter: limits (requests|tokens)
    that could not be checked because the counters (NATS) did not answer in time
switchyard_edge_guardrail_triggered_total{guardrail_type,direction,action}  counter:
    guardrails that fired (type max_length|blocked_terms|regex|pii, direction
    input|output, action block|redact|timeout); the configured names stay out of labels
switchyard_edge_rejections_total{reason}                counter: requests refused before
    the router, by reason rate_limit|budget|credits|guardrail (one per refused request)
switchyard_edge_time_to_first_token_seconds{operation}  histogram: request start to the
    first content chunk a stream sends the client
switchyard_db_pool_*{service}                           gauges (gateway_common.metrics)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    GuardrailBlocked,
    RateLimited,
)

__all__ = ["EdgeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60)
#: Refusals counted in ``switchyard_edge_rejections_total``, most specific class first.
_REJECTIONS: tuple[tuple[type[GatewayError], str], ...] = (
    (BudgetExceeded, "budget"),  # a RateLimited subclass: before it
    (CreditsExhausted, "credits"),
    (RateLimited, "rate_limit"),
    (GuardrailBlocked, "guardrail"),
)
#: Methods that keep their name as a label value; the HTTP parser accepts ~35 (WebDAV's
#: and more), each of which would otherwise add a series per route and status.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class EdgeMetrics:
    """The edge's collectors; ``render`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "switchyard_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "switchyard_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._overhead = Histogram(
            "switchyard_gateway_overhead_seconds",
            "Latency the gateway adds on top of the provider, by operation.",
            ("operation",),
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self._ratelimited = Counter(
            "switchyard_edge_ratelimited",
            "Requests refused by a rate limit, by the refusing limit's scope kind and window.",
            ("scope_kind", "window"),
            registry=self.registry,
        )
        self._ratelimit_unavailable = Counter(
            "switchyard_edge_ratelimit_unavailable",
            "Rate limits left unchecked because their counters did not answer, by kind.",
            ("kind",),
            registry=self.registry,
        )
        self._guardrail_triggered = Counter(
            "switchyard_edge_guardrail_triggered",
            "Guardrails that blocked or redacted, by guardrail type, direction and action.",
            ("guardrail_type", "direction", "action"),
            registry=self.registry,
        )

        self._rejections = Counter(
            "switchyard_edge_rejections",
            "Requests refused before the router, by reason (rate_limit, budget, credits, "
            "guardrail).",
            ("reason",),
            registry=self.registry,
        )
        for _, reason in _REJECTIONS:
            self._rejections.labels(reason)  # every reason exported from the start, at 0
        self._ttft = Histogram(
            "switchyard_edge_time_to_first_token_seconds",
            "Time from request start to the first content chunk of a stream, by operation.",
            ("operation",),
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        method = method if method in _METHODS else "other"
        self._requests.labels(route, method, str(status)).inc()
        self._duration.labels(route).observe(seconds)

    def observe_overhead(self, *, operation: str, seconds: float) -> None:
        """Record the gateway's own share of one routed call."""
        self._overhead.labels(operation).observe(max(seconds, 0.0))

    def count_ratelimited(self, *, scope_kind: str, window: str) -> None:
        """Count one request refused by a rate limit (labels are bounded by the caller)."""
        self._ratelimited.labels(scope_kind, window).inc()

    def count_ratelimit_unavailable(self, *, kind: str) -> None:
        """Count one limit of ``kind`` that could not be checked (fail open or closed)."""
        self._ratelimit_unavailable.labels(kind).inc()

    def count_guardrail(self, *, guardrail_type: str, direction: str, action: str) -> None:
        """Count one guardrail that fired (labels bounded: ``edge.pipeline.guardrails``)."""
        self._guardrail_triggered.labels(guardrail_type, direction, action).inc()

    def count_rejection(self, err: GatewayError) -> None:
        """Count ``err`` if it is a refusal (rate limit, budget, credits, guardrail)."""
        for kind, reason in _REJECTIONS:
            if isinstance(err, kind):
                self._rejections.labels(reason).inc()
                return

    def observe_first_token(self, *, operation: str, seconds: float) -> None:
        """Record one stream's time to its first content chunk."""
        self._ttft.labels(operation).observe(max(seconds, 0.0))

    def render(self) -> bytes:
        """Prometheus text format of every collector."""
        return generate_latest(self.registry)
