"""The edge's client of the rag service (NATS request/reply): knowledge collections,
their documents, and retrieval (``gateway_common.rag_api`` has the contract).

One method per rag subject. Every call waits at most ``timeout_s`` (default
2 s) for rag's reply and raises a ``GatewayError`` otherwise, so a request
never hangs on a missing rag service and never turns its absence into a 500:

    reply "not_found" (unknown, malformed or another project's id)
                                                   -> NotFound (404), code
                                                      "collection_not_found" or
                                                      "document_not_found"
    reply "invalid", or a request this edge cannot build
                                                   -> InvalidRequest (400), code
                                                      "invalid_collection_request"
    reply "conflict" (a collection of that name exists)
                                                   -> InvalidRequest with status 409,
                                                      code "collection_exists"
    no responder, no reply in time, NATS trouble,
    reply "error", or unreadable                   -> ServiceUnavailable (503)
    payload over the NATS server's max_payload     -> PayloadTooLarge (413)

Methods return the reply's payload (``CollectionInfo``, ``DocumentInfo``,
lists of them, or the ``QueryReply``), never a reply with a failure status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from pydantic import ValidationError

from gateway_common import subjects, telemetry
from gateway_common.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from gateway_common.messages import NatsMessage
from gateway_common.rag_api import (
    AddDocument,
    CollectionInfo,
    CollectionKey,
    CollectionReply,
    CollectionsReply,
    CreateCollection,
    DocumentInfo,
    DocumentKey,
    DocumentReply,
    DocumentsReply,
    ListCollections,
    QueryReply,
    QueryRequest,
)

__all__ = [
    "COLLECTION_EXISTS",
    "COLLECTION_NOT_FOUND",
    "DOCUMENT_NOT_FOUND",
    "INVALID_COLLECTION_REQUEST",
    "RagClient",
]

log = logging.getLogger(__name__)

#: ``GatewayError.code`` of a collection id that is unknown, malformed or another project's.
COLLECTION_NOT_FOUND = "collection_not_found"
#: ``GatewayError.code`` of a document id that is unknown or not in that collection.
DOCUMENT_NOT_FOUND = "document_not_found"
#: ``GatewayError.code`` of a create whose name the project already uses (409).
COLLECTION_EXISTS = "collection_exists"
#: ``GatewayError.code`` of a request rag (or this edge) refused as malformed.
INVALID_COLLECTION_REQUEST = "invalid_collection_request"

_UNAVAILABLE = "The gateway's knowledge collections are unavailable. Please retry."

Reply = TypeVar(
    "Reply", QueryReply, CollectionReply, CollectionsReply, DocumentReply, DocumentsReply
)
Request = TypeVar("Request", bound=NatsMessage)


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid collection request: {message}", code=INVALID_COLLECTION_REQUEST)


def _build(factory: Callable[[], Request]) -> Request:
    """The request ``factory`` builds; a 400 naming the fields (never their values) otherwise."""
    try:
        return factory()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise _invalid(problems) from None


def _refusal(status: str, message: str, *, not_found: str) -> GatewayError | None:
    """The error a reply's failure ``status`` stands for (None for "ok")."""
    if status == "not_found":
        if not_found == DOCUMENT_NOT_FOUND:
            return NotFound("Document not found.", param="document_id", code=DOCUMENT_NOT_FOUND)
        return NotFound("Collection not found.", param="collection_id", code=COLLECTION_NOT_FOUND)
    if status == "invalid":
        return _invalid(message)
    if status == "conflict":
        return InvalidRequest(
            "A collection with this name already exists in the project.",
            param="name",
            http_status=409,
            code=COLLECTION_EXISTS,
        )
    return None


class RagClient:
    """Collections, documents and retrieval of one project at a time, over one NATS connection."""

    def __init__(self, nc: Client, *, timeout_s: float = 2.0) -> None:
        self._nc = nc
        self._timeout = timeout_s

    async def query(
        self,
        project_id: str,
        collection_id: str,
        query: str,
        *,
        top_k: int = 5,
        min_score: float = 0.0,
        request_id: str = "",
    ) -> QueryReply:
        """The best ``top_k`` chunks of the collection's ready documents, best first."""
        request = _build(
            lambda: QueryRequest(
                project_id=project_id,
                collection_id=collection_id,
                query=query,
                top_k=top_k,
                min_score=min_score,
                request_id=request_id,
            )
        )
        return await self._call(subjects.RAG_QUERY, request, QueryReply)

    async def create_collection(
        self, project_id: str, name: str, *, description: str = ""
    ) -> CollectionInfo:
        """A new, empty collection; 409 when the project already has one of that name."""
        request = _build(
            lambda: CreateCollection(project_id=project_id, name=name, description=description)
        )
        return _collection(
            await self._call(subjects.RAG_COLLECTION_CREATE, request, CollectionReply)
        )

    async def list_collections(self, project_id: str) -> list[CollectionInfo]:
        """The project's collections, newest first."""
        request = _build(lambda: ListCollections(project_id=project_id))
        reply = await self._call(subjects.RAG_COLLECTION_LIST, request, CollectionsReply)
        return reply.collections

    async def get_collection(self, project_id: str, collection_id: str) -> CollectionInfo:
        """One collection of the project (404 otherwise)."""
        key = _build(lambda: CollectionKey(project_id=project_id, collection_id=collection_id))
        return _collection(await self._call(subjects.RAG_COLLECTION_GET, key, CollectionReply))

    async def delete_collection(self, project_id: str, collection_id: str) -> CollectionInfo:
        """Delete a collection with its documents and chunks; the collection as it was."""
        key = _build(lambda: CollectionKey(project_id=project_id, collection_id=collection_id))
        return _collection(await self._call(subjects.RAG_COLLECTION_DELETE, key, CollectionReply))

    async def add_document(
        self,
        project_id: str,
        collection_id: str,
        name: str,
        text: str,
        *,
        api_key_id: str = "",
        request_id: str = "",
    ) -> tuple[DocumentInfo, bool]:
        """Queue ``text`` for ingestion; the document and whether it is new (same content: not)."""
        request = _build(
            lambda: AddDocument(
                project_id=project_id,
                collection_id=collection_id,
                name=name,
                text=text,
                api_key_id=api_key_id,
                request_id=request_id,
            )
        )
        reply = await self._call(subjects.RAG_DOCUMENT_ADD, request, DocumentReply)
        return _document(reply), reply.created

    async def list_documents(self, project_id: str, collection_id: str) -> list[DocumentInfo]:
        """The collection's documents (404 for a collection the project does not have)."""
        key = _build(lambda: CollectionKey(project_id=project_id, collection_id=collection_id))
        reply = await self._call(subjects.RAG_DOCUMENT_LIST, key, DocumentsReply)
        return reply.documents

    async def get_document(
        self, project_id: str, collection_id: str, document_id: str
    ) -> DocumentInfo:
        """One document with its ingestion ``status`` and ``progress`` (404 otherwise)."""
        key = _document_key(project_id, collection_id, document_id)
        reply = await self._call(subjects.RAG_DOCUMENT_GET, key, DocumentReply, DOCUMENT_NOT_FOUND)
        return _document(reply)

    async def delete_document(
        self, project_id: str, collection_id: str, document_id: str
    ) -> DocumentInfo:
        """Delete a document and its chunks; the document as it was."""
        key = _document_key(project_id, collection_id, document_id)
        reply = await self._call(
            subjects.RAG_DOCUMENT_DELETE, key, DocumentReply, DOCUMENT_NOT_FOUND
        )
        return _document(reply)

    async def _call(
        self,
        subject: str,
        request: NatsMessage,
        reply_type: type[Reply],
        not_found: str = COLLECTION_NOT_FOUND,
    ) -> Reply:
        try:
            msg = await self._nc.request(
                subject, request.to_bytes(), timeout=self._timeout, headers=telemetry.inject()
            )
            reply = reply_type.model_validate_json(msg.data)
        except MaxPayloadError as exc:
            raise PayloadTooLarge(
                "The document is too large for the gateway's knowledge collections.",
                code="document_too_large",
            ) from exc
        except (NatsError, TimeoutError, ValidationError) as exc:
            log.warning("rag request on %s failed: %r", subject, exc)
            raise ServiceUnavailable(_UNAVAILABLE) from exc
        if reply.status == "error":
            log.warning("rag could not answer %s: %s", subject, reply.message)
            raise ServiceUnavailable(_UNAVAILABLE)
        refusal = _refusal(reply.status, reply.message, not_found=not_found)
        if refusal is not None:
            raise refusal
        return reply


def _document_key(project_id: str, collection_id: str, document_id: str) -> DocumentKey:
    return _build(
        lambda: DocumentKey(
            project_id=project_id, collection_id=collection_id, document_id=document_id
        )
    )


def _collection(reply: CollectionReply) -> CollectionInfo:
    if reply.collection is None:
        raise ServiceUnavailable(_UNAVAILABLE)
    return reply.collection


def _document(reply: DocumentReply) -> DocumentInfo:
    if reply.document is None:
        raise ServiceUnavailable(_UNAVAILABLE)
    return reply.document
