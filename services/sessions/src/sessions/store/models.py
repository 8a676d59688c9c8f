"""Sessions' tables (SQLModel), on their own ``MetaData`` so Alembic sees only these.

    sessions            one conversation session (seed 001's ``session_id``): its project and
                        scope (the Gateway API endpoint id, later a channel's or gateway's),
                        ``ttl_seconds``, ``expires_at`` = ``last_active_at`` + ttl, the next
                        turn's ``seq``; ``reaped`` once the reaper deleted its turns (the row
                        stays a while so the id still answers ``expired``)
    session_turns       the turns of a session, unique and read in ``(session_id, seq)``
                        order; ``request_id`` is the append's idempotency key
    stored_responses    Responses API results kept for ``previous_response_id`` chains:
                        the whole input the model saw, its output, and the Response object
                        as returned; read by (id, project_id) only

Stored responses carry ``expires_at`` (created_at + SESSIONS_HISTORY_TTL_S), are
invisible to reads after it and purged periodically (``repo.purge_expired``);
sessions expire by their own ``expires_at`` (``history`` has the life cycle).
JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, MetaData, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["METADATA", "HistorySession", "SessionTurn", "SessionsModel", "StoredResponse"]

METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")
JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")
TIMESTAMP = DateTime(timezone=True)


class SessionsModel(SQLModel, registry=registry(metadata=METADATA)):
    """Base of sessions' table models: binds them to ``METADATA``."""


class HistorySession(SessionsModel, table=True):
    """A conversation session; its id is the ``session_id`` clients pass (a UUID string)."""

    __tablename__ = "sessions"
    __table_args__ = (Index(None, "reaped", "expires_at"),)

    id: str = Field(primary_key=True)
    project_id: str
    scope: str
    ttl_seconds: int
    next_seq: int = Field(sa_type=BigInteger, description="seq of the next appended turn.")
    reaped: bool = False
    created_at: datetime = Field(sa_type=TIMESTAMP)
    last_active_at: datetime = Field(sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)


class SessionTurn(SessionsModel, table=True):
    """One turn (a message) of a session, ``seq`` its position (0 first, no reuse)."""

    __tablename__ = "session_turns"
    __table_args__ = (
        UniqueConstraint("session_id", "seq"),
        Index(None, "session_id", "request_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    session_id: str = Field(foreign_key="sessions.id", ondelete="CASCADE")
    seq: int = Field(sa_type=BigInteger)
    request_id: str
    role: str
    content: Any = Field(sa_type=JSON_TYPE, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP)


class StoredResponse(SessionsModel, table=True):
    """A Responses API result; ``id`` is the response id clients pass as previous_response_id.

    ``input_items`` is the full expanded input (the chain before it included),
    ``output`` the items a follow-up inherits, ``response`` the object that
    ``GET /v1/responses/{id}`` returns.
    """

    __tablename__ = "stored_responses"
    __table_args__ = (Index(None, "expires_at"),)

    id: str = Field(primary_key=True)
    project_id: str
    previous_response_id: str | None = None
    model: str
    input_items: Any = Field(sa_type=JSON_TYPE, nullable=False)
    output: Any = Field(sa_type=JSON_TYPE, nullable=False)
    response: Any = Field(sa_type=JSON_TYPE, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)
