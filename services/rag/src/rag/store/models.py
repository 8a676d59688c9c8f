"""Rag's tables (SQLModel), on their own ``MetaData`` so Alembic sees only these.

    collections   a project's named knowledge collection; (project_id, name) unique;
                  ``embedding_model`` names the embedder its vectors come from
                  (``local:hash-v1`` or a catalog embedding model)
    documents     a source document of a collection: its text (kept until it is
                  indexed, so an interrupted job can start over), SHA-256
                  ``content_hash`` (unique per collection: the same content is
                  never indexed twice), ingestion ``status``
                  queued -> running -> ready | failed, ``progress`` 0..1, the
                  worker's ``lease_until`` while running, ``metered`` once its
                  usage event was acknowledged
    chunks        the indexed pieces of a ready document: ``text``, ``vector``
                  (little-endian float32, L2-normalised), written in the same
                  transaction that marks the document ready

Full-text search is outside these models (migration 0002): on SQLite an FTS5
table ``chunks_fts(text, chunk_id UNINDEXED)`` kept in step by
``store.repo``; on PostgreSQL a GIN index on ``to_tsvector('english', text)``.
Ids are strings minted by the service.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, LargeBinary, MetaData, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["METADATA", "Chunk", "Collection", "Document", "RagModel"]

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
    description: str = Field(default="")
    embedding_model: str
    created_at: datetime = Field(sa_type=TIMESTAMP)


class Document(RagModel, table=True):
    """A source document in a collection (``project_id`` repeated for tenant-scoped queries)."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "content_hash"),
        Index("ix_documents_status_lease_until", "status", "lease_until"),
    )

    id: str = Field(primary_key=True)
    collection_id: str = Field(foreign_key="collections.id", index=True)
    project_id: str
    name: str
    content_hash: str
    content: str = Field(sa_type=Text)
    size_bytes: int
    status: str
    progress: float = Field(default=0.0)
    chunk_count: int = Field(default=0)
    embedding_tokens: int = Field(default=0)
    attempts: int = Field(default=0)
    error: str = Field(default="")
    api_key_id: str = Field(default="")
    lease_until: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    metered: bool = Field(default=False)
    created_at: datetime = Field(sa_type=TIMESTAMP)
    updated_at: datetime = Field(sa_type=TIMESTAMP)


class Chunk(RagModel, table=True):
    """One indexed piece of a ready document."""

    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "chunk_index"),)

    id: str = Field(primary_key=True)
    document_id: str = Field(foreign_key="documents.id")
    collection_id: str = Field(index=True)
    chunk_index: int
    text: str = Field(sa_type=Text)
    vector: bytes = Field(sa_type=LargeBinary)
