"""Billing's Prometheus metrics, registered on the registry ``main`` gives them.

Labels: ``model`` is a catalog model (an event for a model the catalog does not
price is poison, never counted), ``direction`` input|output, ``reason`` and
``subject``/``status`` fixed sets: all bounded. Pool and JetStream consumer
families come from ``gateway_common.metrics`` (registered by the runtime).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["BillingMetrics"]

#: Seconds from the provider call to the committed ledger entry.
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass(frozen=True, slots=True)
class BillingMetrics:
    """Counters of the usage consumer and the request API, the billing lag histogram."""

    billed: Counter
    duplicates: Counter
    poison: Counter
    retried: Counter
    lag: Histogram
    requests: Counter
    leases_reaped: Counter
    cost: Counter
    tokens: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> BillingMetrics:
        """Create the metrics on ``registry`` (once per registry)."""
        return cls(
            billed=Counter(
                "switchyard_billing_events_billed",
                "Usage events written to the ledger.",
                registry=registry,
            ),
            duplicates=Counter(
                "switchyard_billing_events_duplicate",
                "Usage events already in the ledger (redeliveries), acked without effect.",
                registry=registry,
            ),
            poison=Counter(
                "switchyard_billing_events_poison",
                "Usage messages that can never be billed (unparseable, unknown model), terminated.",
                registry=registry,
            ),
            retried=Counter(
                "switchyard_billing_events_retried",
                "Usage messages nak'ed for redelivery after a failure.",
                ["reason"],
                registry=registry,
            ),
            lag=Histogram(
                "switchyard_billing_lag_seconds",
                "billed_at - occurred_at of each newly billed event.",
                buckets=_LAG_BUCKETS,
                registry=registry,
            ),
            requests=Counter(
                "switchyard_billing_requests",
                "Requests answered on billing's NATS subjects, by subject and reply status.",
                ["subject", "status"],
                registry=registry,
            ),
            leases_reaped=Counter(
                "switchyard_billing_leases_reaped",
                "Budget leases closed by the reaper (edge gone, or settle time over).",
                registry=registry,
            ),
            cost=Counter(
                "switchyard_billing_cost_usd",
                "Amount billed to the ledger, in USD, by model (newly billed events only).",
                ["model"],
                registry=registry,
            ),
            tokens=Counter(
                "switchyard_billing_tokens",
                "Tokens billed to the ledger, by model and direction (input or output).",
                ["model", "direction"],
                registry=registry,
            ),
        )

    def count_billed(
        self, *, model: str, amount: float, input_tokens: int, output_tokens: int
    ) -> None:
        """Count one newly billed event's cost and tokens."""
        self.cost.labels(model).inc(amount)
        self.tokens.labels(model, "input").inc(input_tokens)
        self.tokens.labels(model, "output").inc(output_tokens)
