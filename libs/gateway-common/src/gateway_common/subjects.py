"""NATS names in one place: streams, subjects, durable consumers, request/reply.

Events (JetStream, durable, at-least-once; consumers are idempotent on the
event id, which is also the ``Nats-Msg-Id`` so the stream de-duplicates
re-publishes within its duplicate window):

    stream USAGE        subjects usage.>        durable consumer "billing-ledger"
    stream TRANSCRIPTS  subjects session.>      durable consumer "sessions-history"

Request/reply (core NATS, with deadlines):

    health.<service>    each service answers {"service", "status"}
    keys.changed.v1     broadcast: an API key changed; edges refresh their cache
"""

from __future__ import annotations

__all__ = [
    "BILLING_DURABLE",
    "HEALTH_PREFIX",
    "KEYS_CHANGED",
    "SESSIONS_DURABLE",
    "SESSION_TURN_APPENDED",
    "TRANSCRIPTS_STREAM",
    "TRANSCRIPTS_SUBJECTS",
    "USAGE_RECORDED",
    "USAGE_STREAM",
    "USAGE_SUBJECTS",
    "health_subject",
]

USAGE_STREAM = "USAGE"
USAGE_SUBJECTS = ["usage.>"]
USAGE_RECORDED = "usage.recorded.v1"
BILLING_DURABLE = "billing-ledger"

TRANSCRIPTS_STREAM = "TRANSCRIPTS"
TRANSCRIPTS_SUBJECTS = ["session.>"]
SESSION_TURN_APPENDED = "session.turn.appended.v1"
SESSIONS_DURABLE = "sessions-history"

HEALTH_PREFIX = "health"
KEYS_CHANGED = "keys.changed.v1"


def health_subject(service: str) -> str:
    """The request/reply subject on which ``service`` answers health checks."""
    return f"{HEALTH_PREFIX}.{service}"
