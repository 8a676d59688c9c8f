"""The request/reply contract for conversation history by session id, between the edge and sessions.

Seed 001's Gateway API sessions: a client passes ``session_id`` and its new
message; the gateway prepends the history it stored and stores the new turns.
Sessions owns tables ``sessions`` and ``session_turns``; the edge reaches them
only through these messages over core NATS request/reply (subjects in
``gateway_common.subjects``, version in the subject name), one reply each:

    HISTORY_OPEN    OpenHistory  -> HistoryReply  ok | expired | not_found
    HISTORY_APPEND  AppendTurns  -> AppendReply   ok | expired | not_found   sent after the commit
    HISTORY_GET     HistoryKey   -> HistoryReply  ok | expired | not_found

A session belongs to one project and one ``scope`` (the Gateway API endpoint
id today; a channel's or gateway's id later: any string the caller uses to
keep conversations apart). Contract:

- ``open`` without ``session_id`` starts a session (``created: true``, a fresh
  UUID, no turns). Ids are only ever minted by sessions: an id the caller made
  up is ``not_found``, never adopted, unless ``adopt`` (channels, whose site-chosen
  names map to UUID5 ids): then ``open`` starts the session under that id, and an
  expired one restarts under the same id with no turns (status ``expired``).
- ``open`` with the id of a live session of the same project *and* scope
  returns its turns, oldest first (the last ``max_turns`` when given). It reads
  only: it does not extend the session's life (``append`` does).
- An id that is unknown, malformed, or another project's or scope's is
  ``not_found``: indistinguishable from one that never existed.
- A session is live while ``now < expires_at``; ``expires_at`` is
  ``last_active_at + ttl_seconds``, moved by every append. ``open`` of an
  expired session *starts afresh by itself*: status ``expired`` with a new
  session (``created: true``, its new ``session_id``, no turns), so the caller
  needs no second round trip and still learns that the old one ended. ``get``
  and ``append`` of an expired session are ``expired`` and change nothing.
  The expired session's turns are deleted by the reaper; its id keeps
  answering ``expired`` for a retention period, then ``not_found``.
- ``append`` is idempotent by ``request_id``: the same request id again on
  the same session stores nothing more (``appended: false``), so a retry or a
  redelivery never duplicates turns. Its reply is sent only after the commit:
  the very next request with that session id sees the turns.
- At most ``MAX_SESSION_TURNS`` turns are kept per session; an append past
  that drops the oldest. The reply to ``open``/``get`` carries every kept turn
  unless they would not fit in one NATS message: then the oldest are left out
  and ``truncated`` is true. Bounding by a model's context window is the
  caller's job (it knows the model).

A reply with status ``invalid`` names what was wrong with the request
(``message``: field names and rules only, never the values); ``error`` means
sessions could not do it (its database failed): treat it like no answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from .messages import NatsMessage as _Message

__all__ = [
    "MAX_SESSION_TURNS",
    "MAX_TTL_SECONDS",
    "AppendReply",
    "AppendTurns",
    "HistoryKey",
    "HistoryReply",
    "HistoryStatus",
    "OpenHistory",
    "StoredTurn",
    "Turn",
]

#: Turns kept per session; an append past this drops the oldest.
MAX_SESSION_TURNS = 1000
#: Longest time to live a caller may ask for (30 days, OpenAI's retention of stored responses).
MAX_TTL_SECONDS = 30 * 86_400

HistoryStatus = Literal["ok", "not_found", "expired", "invalid", "error"]

_Ttl = Field(
    default=None,
    gt=0,
    le=MAX_TTL_SECONDS,
    description="Seconds the session lives after its last append; None: the service's default "
    "(SESSIONS_HISTORY_TTL_S) when starting a session, the session's own on an append.",
)


class Turn(_Message):
    """One message of a conversation, as the caller will replay it to a model."""

    role: str = Field(min_length=1, max_length=64, description="``user``, ``assistant``, ...")
    content: JsonValue = Field(description="The message content: a string or content parts.")


class StoredTurn(Turn):
    """A kept turn, as ``open`` and ``get`` return it."""

    seq: int = Field(ge=0, description="Position in the session (0 first); gaps mean dropped.")
    created_at: int = Field(description="Unix seconds of the append that stored it.")


class OpenHistory(_Message):
    """Start a session (``session_id`` None) or resume one and read its turns."""

    project_id: str = Field(min_length=1, max_length=255)
    scope: str = Field(min_length=1, max_length=255, description="Endpoint (channel, ...) id.")
    session_id: str | None = Field(default=None, description="As the client sent it.")
    ttl_seconds: int | None = _Ttl
    max_turns: int | None = Field(
        default=None, gt=0, le=MAX_SESSION_TURNS, description="Only the most recent this many."
    )
    adopt: bool = Field(
        default=False,
        description="Channels: ``session_id`` is a UUID the caller derived itself; when no "
        "session has it yet one is started under that id, and when it expired the same id "
        "starts afresh (its old turns deleted). Never adopts another project's or scope's id.",
    )


class AppendTurns(_Message):
    """Append ``turns`` to a live session, once per ``request_id``."""

    project_id: str = Field(min_length=1, max_length=255)
    scope: str = Field(min_length=1, max_length=255)
    session_id: str
    request_id: str = Field(
        min_length=1, max_length=255, description="Idempotency key: the gateway request's id."
    )
    turns: list[Turn] = Field(min_length=1, max_length=MAX_SESSION_TURNS)
    ttl_seconds: int | None = _Ttl


class HistoryKey(_Message):
    """Names one session of one project and scope (``get``)."""

    project_id: str = Field(min_length=1, max_length=255)
    scope: str = Field(min_length=1, max_length=255)
    session_id: str


class HistoryReply(_Message):
    """Sessions' answer to ``open`` and ``get``."""

    status: HistoryStatus
    message: str = Field(default="", description="Why, for ``invalid`` and ``error``.")
    session_id: str | None = Field(
        default=None, description="The session the turns belong to (after ``open``: use this one)."
    )
    created: bool = Field(default=False, description="``open`` started this session just now.")
    turns: list[StoredTurn] = Field(default_factory=list, description="Oldest first.")
    truncated: bool = Field(
        default=False, description="Older kept turns were left out to fit one NATS message."
    )
    expires_at: int | None = Field(default=None, description="Unix seconds; live until then.")


class AppendReply(_Message):
    """Sessions' answer to ``append`` (sent only after the commit)."""

    status: HistoryStatus
    message: str = Field(default="", description="Why, for ``invalid`` and ``error``.")
    appended: bool = Field(
        default=False, description="False when this ``request_id`` had been appended before."
    )
    expires_at: int | None = Field(default=None, description="Unix seconds, after this append.")
