"""Prometheus metrics of sessions' request/reply services, on the runtime's registry.

    switchyard_sessions_requests_total{subject,status}      counter: requests answered, by
        subject (one of the six ``sessions.*`` subjects) and the reply's status
        (ok, not_found, expired, invalid, error)
    switchyard_sessions_request_duration_seconds{subject}   histogram: receipt to reply
    switchyard_sessions_history_duplicates_total            counter: history appends skipped
        because the session already holds the request id's turns (a retried append, or
        the transcript event's copy landed first)
    switchyard_sessions_transcripts_total{outcome}          counter: transcript events
        (``session.turn.appended.v1``) the consumer settled, by outcome: appended,
        duplicate (the request copy landed first), expired, not_found, invalid (poison)

The JetStream lag of ``sessions-history`` and the pool gauges are the shared
families of ``gateway_common.metrics``. Label values are subject constants and
the reply models' status literals: bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway_common import subjects

__all__ = ["SUBJECTS", "TRANSCRIPT_OUTCOMES", "SessionsMetrics"]

#: Every subject sessions answers (each exported from the start).
SUBJECTS = (
    subjects.RESPONSES_PUT,
    subjects.RESPONSES_GET,
    subjects.RESPONSES_DELETE,
    subjects.HISTORY_OPEN,
    subjects.HISTORY_APPEND,
    subjects.HISTORY_GET,
)
#: Every outcome of a transcript event (each exported from the start).
TRANSCRIPT_OUTCOMES = ("appended", "duplicate", "expired", "not_found", "invalid")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class SessionsMetrics:
    """The collectors the responders feed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "switchyard_sessions_requests",
            "Requests sessions answered, by subject and reply status.",
            ("subject", "status"),
            registry=registry,
        )
        self._duration = Histogram(
            "switchyard_sessions_request_duration_seconds",
            "Time from a request's receipt to its reply, by subject.",
            ("subject",),
            buckets=_BUCKETS,
            registry=registry,
        )
        self._duplicates = Counter(
            "switchyard_sessions_history_duplicates",
            "History appends skipped: the session already holds that request id's turns.",
            registry=registry,
        )
        self._transcripts = Counter(
            "switchyard_sessions_transcripts",
            "Transcript events the sessions-history consumer settled, by outcome.",
            ("outcome",),
            registry=registry,
        )
        for subject in SUBJECTS:
            self._requests.labels(subject, "ok")
            self._duration.labels(subject)
        for outcome in TRANSCRIPT_OUTCOMES:
            self._transcripts.labels(outcome)

    def observe(self, *, subject: str, status: str, seconds: float) -> None:
        """Count one answered request (``subject`` is one the responder subscribed to)."""
        self._requests.labels(subject, status).inc()
        self._duration.labels(subject).observe(max(seconds, 0.0))

    def count_duplicate(self) -> None:
        """Count one append whose request id was already stored."""
        self._duplicates.inc()

    def count_transcript(self, outcome: str) -> None:
        """Count one settled transcript event (``outcome`` one of ``TRANSCRIPT_OUTCOMES``)."""
        self._transcripts.labels(outcome).inc()
