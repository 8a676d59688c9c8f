"""Edge tables: ``projects`` and ``api_keys`` (SQLModel Base / Create / table / Public split).

An API key is never stored: only ``key_hash``, the HMAC-SHA256 of the full
key under ``GATEWAY_SECRET_KEY`` (hex), and ``prefix``, its first 12
characters for display. ``Public`` models are what an API may show; they
leave the hash out.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "PREFIX_LEN",
    "ApiKey",
    "ApiKeyBase",
    "ApiKeyCreate",
    "ApiKeyPublic",
    "Project",
    "ProjectBase",
    "ProjectPublic",
]

#: How many leading characters of a key are kept for display.
PREFIX_LEN = 12


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class ProjectBase(SQLModel):
    """A tenant: owns keys and pays for usage."""

    name: str = Field(max_length=200, description="Unique human name.")
    type: str = Field(default="ai_gateway", max_length=50, description="Project kind.")
    settings: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSON, description="Per-project options (free-form)."
    )


class Project(ProjectBase, table=True):
    """Row of ``projects``."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("name", name="uq_projects_name"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class ProjectPublic(ProjectBase):
    """A project as APIs show it."""

    id: str
    created_at: datetime


class ApiKeyBase(SQLModel):
    """What an operator chooses about a key."""

    name: str = Field(max_length=200, description="Label shown in listings.")
    description: str | None = Field(default=None, max_length=1000)
    scopes: list[str] = Field(
        default_factory=list, sa_type=JSON, description="Any of chat, embeddings, responses, admin."
    )
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ApiKeyCreate(ApiKeyBase):
    """Input to ``repo.create_api_key``."""


class ApiKey(ApiKeyBase, table=True):
    """Row of ``api_keys``."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", index=True, max_length=36
    )
    key_hash: str = Field(max_length=64, description="HMAC-SHA256(key), hex; unique.")
    prefix: str = Field(max_length=PREFIX_LEN, description="First characters of the key.")
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ApiKeyPublic(ApiKeyBase):
    """A key as APIs show it: never the hash."""

    id: str
    project_id: str
    prefix: str
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
