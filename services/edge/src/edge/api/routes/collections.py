"""``/v1/collections``: knowledge collections of the caller's project, served by rag.

    POST   /v1/collections                               collections:write  create
    GET    /v1/collections                               collections:read   list
    GET    /v1/collections/{id}                          collections:read   show
    DELETE /v1/collections/{id}                          collections:write  delete (and its documents)
    POST   /v1/collections/{id}/documents                collections:write  add (JSON or file upload)
    GET    /v1/collections/{id}/documents                collections:read   list
    GET    /v1/collections/{id}/documents/{doc_id}       collections:read   show (ingestion status)
    DELETE /v1/collections/{id}/documents/{doc_id}       collections:write  delete
    POST   /v1/collections/{id}/query                    collections:read   top chunks for a query

The project is always the key's own: a collection of another project is 404,
exactly like one that never existed (rag enforces it; ``edge.rag_client``
maps its answers to errors). Uploads are read by ``edge.documents``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway_common import telemetry
from gateway_common.rag_api import MAX_TOP_K, CollectionInfo, DocumentInfo, DocumentStatus

from ...documents import DocumentCreate, read_upload
from ..deps import CollectionsReadKeyDep, CollectionsWriteKeyDep, RagDep
from ..openapi import request_body

__all__ = ["router"]

router = APIRouter(prefix="/v1/collections", tags=["collections"])


_NO_NUL = r"^[^\x00]*$"


class CollectionCreate(BaseModel):
    """``POST /v1/collections``."""

    model_config = ConfigDict(extra="forbid")

    # No NUL (PostgreSQL's text cannot hold it): a 400 naming the field, not a failed write.
    name: str = Field(
        min_length=1, max_length=255, pattern=_NO_NUL, description="Unique within the project."
    )
    description: str = Field(default="", max_length=4096, pattern=_NO_NUL)


class Collection(BaseModel):
    """A collection as clients see it."""

    id: str
    object: Literal["collection"] = "collection"
    name: str
    description: str
    embedding_model: str
    created_at: int = Field(description="Unix seconds.")
    document_count: int

    @classmethod
    def of(cls, info: CollectionInfo) -> Collection:
        return cls(**info.model_dump())


class Document(BaseModel):
    """A document and its ingestion state (poll ``status`` until ready or failed)."""

    id: str
    object: Literal["collection.document"] = "collection.document"
    collection_id: str
    name: str
    status: DocumentStatus
    progress: float = Field(description="0..1 while running.")
    chunk_count: int
    bytes: int = Field(description="UTF-8 bytes of the document's text.")
    content_hash: str = Field(description="SHA-256 of the text, hex.")
    error: str = Field(description="Why ingestion failed ('' otherwise).")
    created_at: int
    updated_at: int
    created: bool | None = Field(
        default=None, description="On add only: false when the collection had this content."
    )

    @classmethod
    def of(cls, info: DocumentInfo, *, created: bool | None = None) -> Document:
        return cls(**info.model_dump(), created=created)


class Deleted(BaseModel):
    """The answer of a delete (OpenAI's shape)."""

    id: str
    object: str
    deleted: Literal[True] = True


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Collection]


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]


class QueryBody(BaseModel):
    """``POST /v1/collections/{id}/query``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=32_768)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class Chunk(BaseModel):
    document_id: str
    document_name: str
    chunk_index: int
    text: str
    score: float = Field(description="0..1, higher is better.")


class QueryResult(BaseModel):
    object: Literal["list"] = "list"
    data: list[Chunk] = Field(description="Best first.")


@router.post("", response_model=Collection)
async def create_collection(
    body: CollectionCreate, key: CollectionsWriteKeyDep, rag: RagDep
) -> Collection:
    """Create an empty collection (409 when the project has one of that name)."""
    info = await rag.create_collection(key.project_id, body.name, description=body.description)
    return Collection.of(info)


@router.get("", response_model=CollectionList)
async def list_collections(key: CollectionsReadKeyDep, rag: RagDep) -> CollectionList:
    """The project's collections, newest first."""
    infos = await rag.list_collections(key.project_id)
    return CollectionList(data=[Collection.of(info) for info in infos])


@router.get("/{collection_id}", response_model=Collection)
async def get_collection(collection_id: str, key: CollectionsReadKeyDep, rag: RagDep) -> Collection:
    """One collection of the project."""
    return Collection.of(await rag.get_collection(key.project_id, collection_id))


@router.delete("/{collection_id}", response_model=Deleted)
async def delete_collection(
    collection_id: str, key: CollectionsWriteKeyDep, rag: RagDep
) -> Deleted:
    """Delete a collection with all its documents and chunks."""
    info = await rag.delete_collection(key.project_id, collection_id)
    return Deleted(id=info.id, object="collection")


@router.post(
    "/{collection_id}/documents",
    response_model=Document,
    response_model_exclude_none=True,
    openapi_extra=request_body(DocumentCreate),
)
async def add_document(
    collection_id: str, request: Request, key: CollectionsWriteKeyDep, rag: RagDep
) -> Document:
    """Queue a document (JSON or a .txt/.md/.pdf upload) for ingestion; poll its status."""
    upload = await read_upload(request)
    info, created = await rag.add_document(
        key.project_id,
        collection_id,
        upload.name,
        upload.text,
        api_key_id=key.key_id,
        request_id=telemetry.REQUEST_ID.get(),
    )
    return Document.of(info, created=created)


@router.get(
    "/{collection_id}/documents", response_model=DocumentList, response_model_exclude_none=True
)
async def list_documents(
    collection_id: str, key: CollectionsReadKeyDep, rag: RagDep
) -> DocumentList:
    """The collection's documents with their ingestion status."""
    infos = await rag.list_documents(key.project_id, collection_id)
    return DocumentList(data=[Document.of(info) for info in infos])


@router.get(
    "/{collection_id}/documents/{document_id}",
    response_model=Document,
    response_model_exclude_none=True,
)
async def get_document(
    collection_id: str, document_id: str, key: CollectionsReadKeyDep, rag: RagDep
) -> Document:
    """One document: ``status`` queued, running, ready or failed, and ``progress``."""
    return Document.of(await rag.get_document(key.project_id, collection_id, document_id))


@router.delete("/{collection_id}/documents/{document_id}", response_model=Deleted)
async def delete_document(
    collection_id: str, document_id: str, key: CollectionsWriteKeyDep, rag: RagDep
) -> Deleted:
    """Delete a document and its chunks."""
    info = await rag.delete_document(key.project_id, collection_id, document_id)
    return Deleted(id=info.id, object="collection.document")


@router.post("/{collection_id}/query", response_model=QueryResult)
async def query_collection(
    collection_id: str, body: QueryBody, key: CollectionsReadKeyDep, rag: RagDep
) -> QueryResult:
    """The ``top_k`` chunks of the collection's ready documents that best answer ``query``."""
    reply = await rag.query(
        key.project_id,
        collection_id,
        body.query,
        top_k=body.top_k,
        min_score=body.min_score,
        request_id=telemetry.REQUEST_ID.get(),
    )
    return QueryResult(data=[Chunk(**chunk.model_dump()) for chunk in reply.chunks])
