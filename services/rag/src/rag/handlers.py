"""NATS request/reply handlers of rag (queue group ``rag``): retrieval and CRUD.

Contract: ``gateway_common.rag_api`` (its docstring lists the subjects and
statuses). Each message is handled in its own task (at most
``max_in_flight`` at once), so a slow query does not hold up the others. A
request that does not parse is ``invalid`` (field names and rules, never the
values); a database or embedder failure is ``error``; a collection or document
the project does not own is ``not_found`` (``_found`` raises it to ``_answer``,
one place for every subject); every request gets an answer. ``aclose`` drains the subscriptions and waits for the tasks in
flight, so it runs before the engine is disposed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects, telemetry
from gateway_common.rag_api import (
    MAX_DOCUMENT_BYTES,
    AddDocument,
    CollectionInfo,
    CollectionKey,
    CollectionReply,
    CollectionsReply,
    CreateCollection,
    CrudStatus,
    DocumentInfo,
    DocumentKey,
    DocumentReply,
    DocumentsReply,
    ListCollections,
    QueryReply,
    QueryRequest,
    QueryUsage,
    RetrievedChunk,
)

from .embed import HASH_MODEL, Embedders, EmbedError, Payer
from .ingest import IngestWorker
from .retrieve import rank
from .store import repo
from .store.models import Collection, Document

__all__ = ["RagResponder"]

log = logging.getLogger(__name__)


class _Reply(Protocol):
    def to_bytes(self) -> bytes: ...


_T = TypeVar("_T")
_Operation = Callable[[bytes], Awaitable[_Reply]]
#: Builds the reply of a subject from a status and a message.
_Refusal = Callable[[CrudStatus, str], _Reply]


def _unix(moment: object) -> int:
    return int(repo.as_utc(moment).timestamp())  # type: ignore[arg-type]


def _collection_info(row: Collection, documents: int = 0) -> CollectionInfo:
    return CollectionInfo(
        id=row.id,
        name=row.name,
        description=row.description,
        embedding_model=row.embedding_model,
        created_at=_unix(row.created_at),
        document_count=documents,
    )


class _DocumentAction(Protocol):
    """A repository function that finds (and may change) one document of one project."""

    def __call__(
        self, *, session: AsyncSession, project_id: str, collection_id: str, document_id: str
    ) -> Awaitable[Document | None]: ...


def _document_info(row: Document) -> DocumentInfo:
    return DocumentInfo(
        id=row.id,
        collection_id=row.collection_id,
        name=row.name,
        content_hash=row.content_hash,
        bytes=row.size_bytes,
        status=row.status,  # type: ignore[arg-type]
        progress=max(0.0, min(1.0, row.progress)),
        chunk_count=row.chunk_count,
        error=row.error,
        created_at=_unix(row.created_at),
        updated_at=_unix(row.updated_at),
    )


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )[:1000]


class _NotFound(Exception):
    """The project has no such collection or document: the subject's ``not_found`` reply."""


def _found(row: _T | None) -> _T:
    """``row``, or ``_NotFound`` when the lookup found nothing (raised to ``_answer``)."""
    if row is None:
        raise _NotFound
    return row


class RagResponder:
    """Serves every rag subject over one sessionmaker (see module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        embedders: Embedders,
        worker: IngestWorker,
        *,
        hybrid: bool = True,
        max_in_flight: int = 32,
    ) -> None:
        self._sessions = sessions
        self._embedders = embedders
        self._worker = worker
        self._hybrid = hybrid
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    def operations(self) -> Mapping[str, tuple[_Operation, _Refusal]]:
        """Subject -> (operation, the reply shape of a refusal)."""

        def query_refusal(status: CrudStatus, message: str) -> _Reply:
            return QueryReply(status="error" if status == "conflict" else status, message=message)

        def collection(status: CrudStatus, message: str) -> _Reply:
            return CollectionReply(status=status, message=message)

        def collections(status: CrudStatus, message: str) -> _Reply:
            return CollectionsReply(status=status, message=message)

        def document(status: CrudStatus, message: str) -> _Reply:
            return DocumentReply(status=status, message=message)

        def documents(status: CrudStatus, message: str) -> _Reply:
            return DocumentsReply(status=status, message=message)

        return {
            subjects.RAG_QUERY: (self._query, query_refusal),
            subjects.RAG_COLLECTION_CREATE: (self._create_collection, collection),
            subjects.RAG_COLLECTION_LIST: (self._list_collections, collections),
            subjects.RAG_COLLECTION_GET: (self._get_collection, collection),
            subjects.RAG_COLLECTION_DELETE: (self._delete_collection, collection),
            subjects.RAG_DOCUMENT_ADD: (self._add_document, document),
            subjects.RAG_DOCUMENT_LIST: (self._list_documents, documents),
            subjects.RAG_DOCUMENT_GET: (self._get_document, document),
            subjects.RAG_DOCUMENT_DELETE: (self._delete_document, document),
        }

    async def start(self, nc: Client) -> None:
        """Subscribe to every subject in queue group ``rag``."""
        for subject, (operation, refusal) in self.operations().items():
            self._subs.append(
                await nc.subscribe(
                    subject, queue=subjects.RAG_QUEUE, cb=self._spawn(operation, refusal)
                )
            )

    async def aclose(self) -> None:
        """Stop taking requests, answer the ones received, wait for them."""
        for sub in self._subs:
            await sub.drain()
        self._subs.clear()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, operation: _Operation, refusal: _Refusal) -> Callable[[Msg], Awaitable[None]]:
        async def callback(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(msg, operation, refusal))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return callback

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg, operation: _Operation, refusal: _Refusal) -> None:
        with telemetry.consumer_span(msg, "process"):
            try:
                reply = await operation(msg.data)
            except _NotFound:
                reply = refusal("not_found", "")
            except ValidationError as exc:
                reply = refusal("invalid", _problems(exc))
            except SQLAlchemyError as exc:
                log.error("rag: database error on %s: %s", msg.subject, exc)
                reply = refusal("error", "database error")
            except EmbedError as exc:
                log.error("rag: embedding failed on %s: %s", msg.subject, exc.message)
                reply = refusal("error", exc.message)
            try:
                await msg.respond(reply.to_bytes())
            except NatsError as exc:
                log.warning("rag: reply on %s not sent: %s", msg.subject, exc)

    async def _owned(
        self, session: AsyncSession, project_id: str, collection_id: str
    ) -> Collection:
        """The project's collection; ``_NotFound`` (a ``not_found`` reply) when it has none such."""
        return _found(
            await repo.get_collection(
                session=session, project_id=project_id, collection_id=collection_id
            )
        )

    async def _query(self, data: bytes) -> _Reply:
        request = QueryRequest.model_validate_json(data)
        async with self._sessions() as session:
            collection = await self._owned(session, request.project_id, request.collection_id)
            embedder = self._embedders.embedder_for(collection.embedding_model)
            embedded = await embedder.embed(
                [request.query],
                payer=Payer(project_id=request.project_id, request_id=request.request_id),
            )
            lexical = (
                await repo.lexical_scores(
                    session=session, collection_id=collection.id, query=request.query
                )
                if self._hybrid
                else {}
            )
            near = await repo.nearest(
                session=session,
                collection_id=collection.id,
                vector=embedded.vectors[0],
                top_k=request.top_k,
            )
            pool = await repo.candidates(
                session=session,
                collection_id=collection.id,
                only=None if near is None else [*near, *lexical],
            )
        ranked = rank(
            embedded.vectors[0],
            pool,
            lexical,
            top_k=request.top_k,
            min_score=request.min_score,
            hybrid=self._hybrid,
        )
        return QueryReply(
            status="ok",
            chunks=[
                RetrievedChunk(
                    document_id=item.candidate.document_id,
                    document_name=item.candidate.document_name,
                    chunk_index=item.candidate.chunk_index,
                    text=item.candidate.text,
                    score=round(item.score, 6),
                )
                for item in ranked
            ],
            usage=QueryUsage(
                model=""
                if collection.embedding_model == HASH_MODEL
                else collection.embedding_model,
                embedding_tokens=embedded.tokens,
            ),
        )

    async def _create_collection(self, data: bytes) -> _Reply:
        request = CreateCollection.model_validate_json(data)
        async with self._sessions() as session:
            row = await repo.create_collection(
                session=session,
                project_id=request.project_id,
                name=request.name,
                description=request.description,
                embedding_model=self._embedders.default_model,
            )
        if row is None:
            return CollectionReply(status="conflict", message="a collection with this name exists")
        return CollectionReply(status="ok", collection=_collection_info(row))

    async def _list_collections(self, data: bytes) -> _Reply:
        request = ListCollections.model_validate_json(data)
        async with self._sessions() as session:
            rows = await repo.list_collections(session=session, project_id=request.project_id)
            counts = await repo.document_counts(
                session=session, collection_ids=[row.id for row in rows]
            )
        return CollectionsReply(
            status="ok", collections=[_collection_info(row, counts.get(row.id, 0)) for row in rows]
        )

    async def _get_collection(self, data: bytes) -> _Reply:
        key = CollectionKey.model_validate_json(data)
        async with self._sessions() as session:
            row = await self._owned(session, key.project_id, key.collection_id)
            counts = await repo.document_counts(session=session, collection_ids=[row.id])
        return CollectionReply(status="ok", collection=_collection_info(row, counts.get(row.id, 0)))

    async def _delete_collection(self, data: bytes) -> _Reply:
        key = CollectionKey.model_validate_json(data)
        async with self._sessions() as session:
            row = _found(
                await repo.delete_collection(
                    session=session, project_id=key.project_id, collection_id=key.collection_id
                )
            )
        return CollectionReply(status="ok", collection=_collection_info(row))

    async def _add_document(self, data: bytes) -> _Reply:
        request = AddDocument.model_validate_json(data)
        content = request.text.encode()
        if len(content) > MAX_DOCUMENT_BYTES:
            return DocumentReply(
                status="invalid", message=f"text: at most {MAX_DOCUMENT_BYTES} bytes"
            )
        if not request.text.strip():
            return DocumentReply(status="invalid", message="text: must not be blank")
        async with self._sessions() as session:
            collection = await self._owned(session, request.project_id, request.collection_id)
            row, created = await repo.add_document(
                session=session,
                collection=collection,
                name=request.name,
                content=request.text,
                content_hash=hashlib.sha256(content).hexdigest(),
                api_key_id=request.api_key_id,
            )
        self._worker.wake()
        return DocumentReply(status="ok", document=_document_info(row), created=created)

    async def _list_documents(self, data: bytes) -> _Reply:
        key = CollectionKey.model_validate_json(data)
        async with self._sessions() as session:
            collection = await self._owned(session, key.project_id, key.collection_id)
            rows = await repo.list_documents(session=session, collection_id=collection.id)
        return DocumentsReply(status="ok", documents=[_document_info(row) for row in rows])

    async def _get_document(self, data: bytes) -> _Reply:
        return await self._one_document(data, repo.get_document)

    async def _delete_document(self, data: bytes) -> _Reply:
        return await self._one_document(data, repo.delete_document)

    async def _one_document(self, data: bytes, action: _DocumentAction) -> _Reply:
        """Parse a ``DocumentKey``, run ``action`` (a get or a delete) on it, reply with the row."""
        key = DocumentKey.model_validate_json(data)
        async with self._sessions() as session:
            row = _found(
                await action(
                    session=session,
                    project_id=key.project_id,
                    collection_id=key.collection_id,
                    document_id=key.document_id,
                )
            )
        return DocumentReply(status="ok", document=_document_info(row))
