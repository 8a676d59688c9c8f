"""The request/reply contract for retrieval from knowledge collections, between the edge and rag.

Rag owns the collections, documents and chunks of every project; the edge
reaches them only through messages over core NATS request/reply (subjects in
``gateway_common.subjects``, version in the subject name, queue group
``"rag"`` so replicas share the work), one reply each:

    RAG_QUERY   QueryRequest  -> QueryReply   ok | not_found | invalid | error

Contract of ``query``:

- A collection belongs to one project. A collection id that is unknown,
  malformed or another project's is ``not_found``: indistinguishable from one
  that never existed.
- ``chunks`` are the best ``top_k`` chunks of the collection's *ready*
  documents for ``query``, best first, each with ``score`` >= ``min_score``
  (scores in [0, 1], higher is better); a document still being ingested is not
  searched, so an answer is never grounded in a half-indexed document.
- ``usage`` reports what the query itself consumed (the embedding of the
  query), so the caller can bill retrieval with the answer's usage event.

A reply with status ``invalid`` names what was wrong with the request
(``message``: field names and rules only, never the values); ``error`` means
rag could not do it (its database or embedder failed): treat it like no answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .messages import NatsMessage as _Message

__all__ = [
    "MAX_TOP_K",
    "QueryReply",
    "QueryRequest",
    "QueryStatus",
    "QueryUsage",
    "RetrievedChunk",
]

#: Most chunks one query may ask for.
MAX_TOP_K = 50

QueryStatus = Literal["ok", "not_found", "invalid", "error"]


class QueryRequest(_Message):
    """Find the chunks of one collection of one project that best answer ``query``."""

    project_id: str = Field(min_length=1, max_length=255)
    collection_id: str = Field(min_length=1, max_length=255)
    query: str = Field(min_length=1, max_length=32_768)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    request_id: str = Field(
        default="", max_length=255, description="The gateway request id, for logs and traces."
    )


class RetrievedChunk(_Message):
    """One chunk of a ready document, as retrieval ranked it."""

    document_id: str
    document_name: str = ""
    chunk_index: int = Field(ge=0)
    text: str
    score: float = Field(ge=0.0, le=1.0)


class QueryUsage(_Message):
    """What answering the query consumed, for the caller's usage event."""

    model: str = Field(default="", description="Catalog embedding model used ('' if local).")
    embedding_tokens: int = Field(default=0, ge=0)


class QueryReply(_Message):
    """Rag's answer to ``query``."""

    status: QueryStatus
    chunks: list[RetrievedChunk] = Field(default_factory=list)
    usage: QueryUsage = Field(default_factory=QueryUsage)
    message: str = ""
