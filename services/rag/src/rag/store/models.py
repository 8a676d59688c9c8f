"""Rag's tables (SQLModel), on their own ``MetaData`` so Alembic sees only these.

    collections   a project's named knowledge collection; (project_id, name) unique;
                  ``embedding_model`` is the catalog model its vectors come from
    documents     a source document ingested into a collection

Ids are strings minted by the service. Chunks and vectors arrive with the
ingest issue; Read/Create models with the rag API.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, MetaData, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["METADATA", "Collection", "Document", "RagModel"]

METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TIMESTAMP = DateTime(timezone=True)


class RagModel(SQLModel, registry=registry(metadata=METADATA)):
    """Base of rag's table models: binds them to ``METADATA``."""


class Collection(RagModel, table=True):
    """A named knowledge collection of one project."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: str = Field(primary_key=True)
    project_id: str
    name: str
    embedding_model: str
    created_at: datetime = Field(sa_type=TIMESTAMP)


class Document(RagModel, table=True):
    """A source document in a collection (``project_id`` repeated for tenant-scoped queries)."""

    __tablename__ = "documents"

    id: str = Field(primary_key=True)
    collection_id: str = Field(foreign_key="collections.id", index=True)
    project_id: str
    source: str
    content: str
    created_at: datetime = Field(sa_type=TIMESTAMP)
