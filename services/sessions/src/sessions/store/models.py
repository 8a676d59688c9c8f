"""Sessions' tables (SQLModel), on their own ``MetaData`` so Alembic sees only these.

    session_turns       one row per appended turn of a conversation; ``event_id`` unique
                        (the transcript event's id: redelivery is harmless); read in
                        ``seq`` order per (project, session)
    stored_responses    Responses API results kept for ``previous_response_id`` chains:
                        the whole input the model saw, its output, and the Response object
                        as returned; read by (id, project_id) only

Every row carries ``expires_at`` (default: created_at + SESSIONS_HISTORY_TTL_S).
JSON columns are JSONB on PostgreSQL. Expired rows are invisible to reads and
purged periodically (``repo.purge_expired``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["METADATA", "SessionTurn", "SessionsModel", "StoredResponse"]

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


class SessionTurn(SessionsModel, table=True):
    """One turn (a message, or a tool call/result) of a conversation."""

    __tablename__ = "session_turns"
    __table_args__ = (Index(None, "project_id", "session_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    event_id: str = Field(unique=True)
    project_id: str
    session_id: str
    seq: int
    role: str
    content: Any = Field(sa_type=JSON_TYPE, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)


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
