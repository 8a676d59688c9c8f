"""The request/reply contract for retrieval from knowledge collections, between the edge and rag.

Rag owns the collections, documents and chunks of every project; the edge
reaches them only through messages over core NATS request/reply (subjects in
``gateway_common.subjects``, version in the subject name, queue group
``"rag"`` so replicas share the work), one reply each:

    RAG_QUERY              QueryRequest        -> QueryReply       ok | not_found | invalid | error
    RAG_COLLECTION_CREATE  CreateCollection    -> CollectionReply  ok | conflict | invalid | error
    RAG_COLLECTION_LIST    ListCollections     -> CollectionsReply ok | invalid | error
    RAG_COLLECTION_GET     CollectionKey       -> CollectionReply  ok | not_found | invalid | error
    RAG_COLLECTION_DELETE  CollectionKey       -> CollectionReply  ok | not_found | invalid | error
    RAG_DOCUMENT_ADD       AddDocument         -> DocumentReply    ok | not_found | invalid | error
    RAG_DOCUMENT_LIST      CollectionKey       -> DocumentsReply   ok | not_found | invalid | error
    RAG_DOCUMENT_GET       DocumentKey         -> DocumentReply    ok | not_found | invalid | error
    RAG_DOCUMENT_DELETE    DocumentKey         -> DocumentReply    ok | not_found | invalid | error

Every request names its ``project_id``; a collection or document of another
project is ``not_found``, exactly like one that never existed. ``AddDocument``
answers at once with the document in status ``queued`` (or the existing
document when the collection already holds the same content, by SHA-256 of
the text: ``created`` false, nothing re-indexed); rag's ingestion worker then
moves it to ``running`` and ``ready`` (or ``failed`` with ``error``), and
``RAG_DOCUMENT_GET`` reports ``status`` and ``progress`` (0..1).

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
    "MAX_DOCUMENT_BYTES",
    "MAX_TOP_K",
    "AddDocument",
    "CollectionInfo",
    "CollectionKey",
    "CollectionReply",
    "CollectionsReply",
    "CreateCollection",
    "CrudStatus",
    "DocumentInfo",
    "DocumentKey",
    "DocumentReply",
    "DocumentStatus",
    "DocumentsReply",
    "ListCollections",
    "QueryReply",
    "QueryRequest",
    "QueryStatus",
    "QueryUsage",
    "RetrievedChunk",
]

#: Most chunks one query may ask for.
MAX_TOP_K = 50

#: Largest document text (UTF-8 bytes) one ``AddDocument`` may carry; it must fit one NATS message.
MAX_DOCUMENT_BYTES = 768 * 1024

QueryStatus = Literal["ok", "not_found", "invalid", "error"]
CrudStatus = Literal["ok", "not_found", "conflict", "invalid", "error"]
DocumentStatus = Literal["queued", "running", "ready", "failed"]


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


class CreateCollection(_Message):
    """Create a collection named ``name`` in ``project_id`` (names are unique per project)."""

    project_id: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=4096)


class ListCollections(_Message):
    """Every collection of ``project_id``, newest first."""

    project_id: str = Field(min_length=1, max_length=255)


class CollectionKey(_Message):
    """One collection of one project."""

    project_id: str = Field(min_length=1, max_length=255)
    collection_id: str = Field(min_length=1, max_length=255)


class CollectionInfo(_Message):
    """A collection as clients see it."""

    id: str
    name: str
    description: str = ""
    embedding_model: str
    created_at: int = Field(description="Unix seconds.")
    document_count: int = Field(default=0, ge=0)


class CollectionReply(_Message):
    """One collection (create, get, delete)."""

    status: CrudStatus
    collection: CollectionInfo | None = None
    message: str = ""


class CollectionsReply(_Message):
    """The collections of a project."""

    status: CrudStatus
    collections: list[CollectionInfo] = Field(default_factory=list)
    message: str = ""


class AddDocument(_Message):
    """Queue ``text`` for ingestion into a collection as document ``name``."""

    project_id: str = Field(min_length=1, max_length=255)
    collection_id: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=1024)
    text: str = Field(min_length=1)
    api_key_id: str = Field(default="", max_length=255, description="Billed key, if any.")
    request_id: str = Field(default="", max_length=255)


class DocumentKey(_Message):
    """One document of one collection of one project."""

    project_id: str = Field(min_length=1, max_length=255)
    collection_id: str = Field(min_length=1, max_length=255)
    document_id: str = Field(min_length=1, max_length=255)


class DocumentInfo(_Message):
    """A document and its ingestion state."""

    id: str
    collection_id: str
    name: str
    content_hash: str = Field(description="SHA-256 of the UTF-8 text, hex.")
    bytes: int = Field(ge=0)
    status: DocumentStatus
    progress: float = Field(ge=0.0, le=1.0)
    chunk_count: int = Field(default=0, ge=0)
    error: str = ""
    created_at: int = Field(description="Unix seconds.")
    updated_at: int = Field(description="Unix seconds.")


class DocumentReply(_Message):
    """One document (add, get, delete); ``created`` false when an add matched existing content."""

    status: CrudStatus
    document: DocumentInfo | None = None
    created: bool = False
    message: str = ""


class DocumentsReply(_Message):
    """The documents of a collection."""

    status: CrudStatus
    documents: list[DocumentInfo] = Field(default_factory=list)
    message: str = ""
