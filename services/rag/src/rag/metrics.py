"""Prometheus metrics of rag's ingestion jobs, on the runtime's registry.

    switchyard_rag_ingest_jobs_total{outcome}             counter: jobs ended, by outcome:
        ready (indexed), failed (no text, embedding refused, or out of attempts after
        expired leases), requeued (a dead worker's lease expired), abandoned (the
        document was deleted mid-job)
    switchyard_rag_ingest_duration_seconds{outcome}       histogram: claim to end of one job
        run by this worker (ready, failed, abandoned)
    switchyard_rag_ingest_queue_depth                     gauge: documents queued for ingestion,
        read from the database at each worker step (so every replica reports the same
        shared queue)

Label values are the four outcome literals: bounded.
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OUTCOMES", "Outcome", "RagMetrics"]

Outcome = Literal["ready", "failed", "requeued", "abandoned"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("ready", "failed", "requeued", "abandoned")
_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RagMetrics:
    """The collectors the ingestion worker feeds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._jobs = Counter(
            "switchyard_rag_ingest_jobs",
            "Ingestion jobs ended, by outcome.",
            ("outcome",),
            registry=registry,
        )
        self._duration = Histogram(
            "switchyard_rag_ingest_duration_seconds",
            "Time from claiming an ingestion job to its end, by outcome.",
            ("outcome",),
            buckets=_BUCKETS,
            registry=registry,
        )
        self._queued = Gauge(
            "switchyard_rag_ingest_queue_depth",
            "Documents queued for ingestion (shared by every rag replica).",
            registry=registry,
        )
        for outcome in OUTCOMES:
            self._jobs.labels(outcome)
            if outcome != "requeued":
                self._duration.labels(outcome)

    def job_ended(self, outcome: Outcome, seconds: float) -> None:
        """Count one job this worker ran, ended with ``outcome`` after ``seconds``."""
        self._jobs.labels(outcome).inc()
        self._duration.labels(outcome).observe(max(seconds, 0.0))

    def expired(self, *, requeued: int, failed: int) -> None:
        """Count jobs whose lease expired: ``requeued`` to run again, ``failed`` for good."""
        self._jobs.labels("requeued").inc(requeued)
        self._jobs.labels("failed").inc(failed)

    def queue_depth(self, queued: int) -> None:
        """Set the number of documents waiting to be ingested."""
        self._queued.set(queued)
