"""Repository functions over rag's tables: keyword-only, explicit session.

Everything is addressed by ``project_id`` as well as by id: a collection or
document of another project is never read, returned or changed (callers
answer ``not_found``). Full-text rows (SQLite's ``chunks_fts``) are written
and deleted here, in the same transaction as their chunks.

Ingestion state machine of a document (``claim_next``, ``finish_ready``,
``finish_failed``, ``requeue_expired``)::

    queued --claim (lease)--> running --chunks + ready, one commit--> ready
                                 |  \\--error--> failed
                                 \\--lease expired (worker died)--> queued (attempts < max)
                                                                 -> failed (attempts = max)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..embed import pack, unpack
from ..retrieve import Candidate
from . import vectors
from .models import Chunk, Collection, Document

__all__ = [
    "NewChunk",
    "add_document",
    "as_utc",
    "candidates",
    "claim_next",
    "create_collection",
    "delete_collection",
    "delete_document",
    "document_counts",
    "finish_failed",
    "finish_ready",
    "get_collection",
    "get_document",
    "lexical_scores",
    "list_collections",
    "list_documents",
    "mark_metered",
    "nearest",
    "requeue_expired",
    "set_progress",
    "unmetered",
]

_FTS_WORD = re.compile(r"[A-Za-z0-9]+")


def now() -> datetime:
    """The current UTC time (the one clock of the repository)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC (SQLite hands timestamps back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_id(prefix: str) -> str:
    """A fresh id such as ``col_<32 hex>``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def create_collection(
    *, session: AsyncSession, project_id: str, name: str, description: str, embedding_model: str
) -> Collection | None:
    """A new collection, committed; None if the project already has one named ``name``."""
    row = Collection(
        id=new_id("col"),
        project_id=project_id,
        name=name,
        description=description,
        embedding_model=embedding_model,
        created_at=now(),
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return row


async def list_collections(*, session: AsyncSession, project_id: str) -> list[Collection]:
    """The project's collections, newest first."""
    result = await session.exec(
        select(Collection)
        .where(Collection.project_id == project_id)
        .order_by(col(Collection.created_at).desc(), col(Collection.id))
    )
    return list(result.all())


async def document_counts(
    *, session: AsyncSession, collection_ids: Sequence[str]
) -> dict[str, int]:
    """Documents per collection id (ids without documents are absent)."""
    if not collection_ids:
        return {}
    result = await session.exec(
        select(Document.collection_id, func.count())
        .where(col(Document.collection_id).in_(collection_ids))
        .group_by(col(Document.collection_id))
    )
    return {collection_id: count for collection_id, count in result.all()}


async def queued_count(*, session: AsyncSession) -> int:
    """Documents waiting for ingestion, every project's (the shared queue's depth)."""
    result = await session.exec(
        select(func.count()).select_from(Document).where(Document.status == "queued")
    )
    return int(result.one())


async def get_collection(
    *, session: AsyncSession, project_id: str, collection_id: str
) -> Collection | None:
    """The collection, if it exists and belongs to ``project_id``."""
    row = await session.get(Collection, collection_id)
    return row if row is not None and row.project_id == project_id else None


async def _delete_chunks(session: AsyncSession, document_ids: Sequence[str]) -> None:
    if not document_ids:
        return
    chunk_ids = select(Chunk.id).where(col(Chunk.document_id).in_(document_ids))
    ids = list((await session.exec(chunk_ids)).all())
    await vectors.delete(session, ids)
    if _is_sqlite(session):
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ", ".join(f":c{i}" for i in range(len(batch)))
            await session.exec(  # type: ignore[call-overload]
                text(f"DELETE FROM chunks_fts WHERE chunk_id IN ({marks})").bindparams(
                    **{f"c{i}": value for i, value in enumerate(batch)}
                )
            )
    await session.exec(delete(Chunk).where(col(Chunk.document_id).in_(document_ids)))


async def delete_collection(
    *, session: AsyncSession, project_id: str, collection_id: str
) -> Collection | None:
    """Delete the collection with its documents and chunks, committed; None if not found."""
    row = await get_collection(session=session, project_id=project_id, collection_id=collection_id)
    if row is None:
        return None
    doc_ids = list(
        (
            await session.exec(select(Document.id).where(Document.collection_id == collection_id))
        ).all()
    )
    await _delete_chunks(session, doc_ids)
    await session.exec(delete(Document).where(col(Document.collection_id) == collection_id))
    await session.delete(row)
    await session.commit()
    return row


async def add_document(
    *,
    session: AsyncSession,
    collection: Collection,
    name: str,
    content: str,
    content_hash: str,
    api_key_id: str,
) -> tuple[Document, bool]:
    """Queue ``content`` as a document of ``collection``; committed.

    Idempotent per content hash: when the collection already holds this
    content, that document is returned with ``False`` and nothing changes (a
    failed one is queued again, so a retry can succeed).
    """
    existing = await _by_hash(session, collection.id, content_hash)
    if existing is not None:
        return await _retry_if_failed(session, existing), False
    moment = now()
    row = Document(
        id=new_id("doc"),
        collection_id=collection.id,
        project_id=collection.project_id,
        name=name,
        content_hash=content_hash,
        content=content,
        size_bytes=len(content.encode()),
        status="queued",
        api_key_id=api_key_id,
        created_at=moment,
        updated_at=moment,
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raced = await _by_hash(session, collection.id, content_hash)
        if raced is None:
            raise
        return raced, False
    return row, True


async def _by_hash(session: AsyncSession, collection_id: str, content_hash: str) -> Document | None:
    result = await session.exec(
        select(Document).where(
            Document.collection_id == collection_id, Document.content_hash == content_hash
        )
    )
    return result.first()


async def _retry_if_failed(session: AsyncSession, row: Document) -> Document:
    if row.status != "failed":
        return row
    row.status, row.error, row.progress, row.attempts = "queued", "", 0.0, 0
    row.updated_at = now()
    session.add(row)
    await session.commit()
    return row


async def list_documents(*, session: AsyncSession, collection_id: str) -> list[Document]:
    """The documents of a collection (already checked to be the caller's), oldest first."""
    result = await session.exec(
        select(Document)
        .where(Document.collection_id == collection_id)
        .order_by(col(Document.created_at), col(Document.id))
    )
    return list(result.all())


async def get_document(
    *, session: AsyncSession, project_id: str, collection_id: str, document_id: str
) -> Document | None:
    """The document, if it is in that collection of ``project_id``."""
    row = await session.get(Document, document_id)
    if row is None or row.project_id != project_id or row.collection_id != collection_id:
        return None
    return row


async def delete_document(
    *, session: AsyncSession, project_id: str, collection_id: str, document_id: str
) -> Document | None:
    """Delete the document and its chunks, committed; None if not found.

    A running job notices at its final commit (``finish_ready`` finds no
    running row) and writes nothing.
    """
    row = await get_document(
        session=session, project_id=project_id, collection_id=collection_id, document_id=document_id
    )
    if row is None:
        return None
    await _delete_chunks(session, [row.id])
    await session.delete(row)
    await session.commit()
    return row


async def requeue_expired(*, session: AsyncSession, max_attempts: int) -> tuple[int, int]:
    """Jobs whose worker's lease ran out (it died): back to ``queued``, or ``failed`` after
    ``max_attempts``; committed. Returns (requeued, failed)."""
    moment = now()
    expired = (col(Document.status) == "running") & (col(Document.lease_until) < moment)
    failed = await session.exec(  # type: ignore[call-overload]
        update(Document)
        .where(expired & (col(Document.attempts) >= max_attempts))
        .values(
            status="failed",
            error=f"ingestion was interrupted {max_attempts} times",
            lease_until=None,
            updated_at=moment,
        )
    )
    requeued = await session.exec(  # type: ignore[call-overload]
        update(Document)
        .where(expired & (col(Document.attempts) < max_attempts))
        .values(status="queued", progress=0.0, lease_until=None, updated_at=moment)
    )
    await session.commit()
    return int(requeued.rowcount or 0), int(failed.rowcount or 0)


async def claim_next(*, session: AsyncSession, lease_s: float) -> Document | None:
    """Take the oldest queued document for this worker (status running, a lease, one more
    attempt); committed. None when nothing is queued. Safe with several workers: the
    conditional update lets exactly one of them win a row."""
    for _ in range(5):
        result = await session.exec(
            select(Document.id)
            .where(Document.status == "queued")
            .order_by(col(Document.created_at))
            .limit(1)
        )
        doc_id = result.first()
        if doc_id is None:
            return None
        moment = now()
        won = await session.exec(  # type: ignore[call-overload]
            update(Document)
            .where((col(Document.id) == doc_id) & (Document.status == "queued"))
            .values(
                status="running",
                progress=0.0,
                attempts=Document.attempts + 1,
                lease_until=moment + timedelta(seconds=lease_s),
                updated_at=moment,
            )
        )
        await session.commit()
        if won.rowcount == 1:
            return await session.get(Document, doc_id, populate_existing=True)
    return None


async def set_progress(
    *, session: AsyncSession, document_id: str, progress: float, lease_s: float
) -> bool:
    """Record progress and extend the lease; committed. False if the job is no longer this
    running document (deleted meanwhile), so the worker stops."""
    moment = now()
    result = await session.exec(  # type: ignore[call-overload]
        update(Document)
        .where((col(Document.id) == document_id) & (Document.status == "running"))
        .values(
            progress=progress, lease_until=moment + timedelta(seconds=lease_s), updated_at=moment
        )
    )
    await session.commit()
    return bool(result.rowcount == 1)


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk ready to be stored: its text and unit vector."""

    text: str
    vector: Sequence[float]


async def finish_ready(
    *, session: AsyncSession, document_id: str, chunks: Sequence[NewChunk], tokens: int
) -> bool:
    """Write every chunk (and its full-text row) and mark the document ready, in one commit.

    False (nothing written) when the document is no longer running: it was
    deleted, or its lease ran out and it was taken again.
    """
    row = await session.get(Document, document_id, populate_existing=True)
    if row is None or row.status != "running":
        await session.rollback()
        return False
    sqlite = _is_sqlite(session)
    indexed: list[tuple[str, str, Sequence[float]]] = []
    for index, piece in enumerate(chunks):
        chunk_id = new_id("chk")
        indexed.append((chunk_id, row.collection_id, piece.vector))
        session.add(
            Chunk(
                id=chunk_id,
                document_id=document_id,
                collection_id=row.collection_id,
                chunk_index=index,
                text=piece.text,
                vector=pack(piece.vector),
            )
        )
        if sqlite:
            await session.exec(  # type: ignore[call-overload]
                text("INSERT INTO chunks_fts (text, chunk_id) VALUES (:text, :id)").bindparams(
                    text=piece.text, id=chunk_id
                )
            )
    await session.flush()
    await vectors.write(session, indexed)
    row.status, row.progress, row.chunk_count = "ready", 1.0, len(chunks)
    row.embedding_tokens, row.lease_until, row.error = tokens, None, ""
    row.content = ""
    row.updated_at = now()
    session.add(row)
    await session.commit()
    return True


async def finish_failed(*, session: AsyncSession, document_id: str, error: str) -> None:
    """Mark a running document failed with a user-safe ``error``; committed."""
    await session.exec(  # type: ignore[call-overload]
        update(Document)
        .where((col(Document.id) == document_id) & (Document.status == "running"))
        .values(status="failed", error=error[:1000], lease_until=None, updated_at=now())
    )
    await session.commit()


async def unmetered(*, session: AsyncSession, limit: int = 100) -> list[Document]:
    """Ready documents whose usage event is not yet acknowledged."""
    result = await session.exec(
        select(Document)
        .where(Document.status == "ready", col(Document.metered).is_(False))
        .limit(limit)
    )
    return list(result.all())


async def mark_metered(*, session: AsyncSession, document_id: str) -> None:
    """Record that the document's usage event was acknowledged; committed."""
    await session.exec(  # type: ignore[call-overload]
        update(Document).where(col(Document.id) == document_id).values(metered=True)
    )
    await session.commit()


async def nearest(
    *, session: AsyncSession, collection_id: str, vector: Sequence[float], top_k: int
) -> list[str] | None:
    """Ids of the chunks nearest ``vector`` by the vector index (``vectors.POOL_SIZE`` of them,
    at least ``top_k``); None when the database has no index, so every chunk is a candidate."""
    return await vectors.nearest(session, collection_id, vector, max(vectors.POOL_SIZE, top_k))


async def candidates(
    *, session: AsyncSession, collection_id: str, only: Sequence[str] | None = None
) -> list[Candidate]:
    """The chunks of the collection's ready documents with their vectors: every one, or
    those among the ids ``only`` (the index's nearest and the full-text hits)."""
    statement = (
        select(Chunk, Document.name)
        .join(Document, col(Document.id) == col(Chunk.document_id))
        .where(Chunk.collection_id == collection_id, Document.status == "ready")
    )
    if only is not None:
        statement = statement.where(col(Chunk.id).in_(list(only)))
    result = await session.exec(statement)
    return [
        Candidate(
            chunk_id=chunk.id,
            document_id=chunk.document_id,
            document_name=name,
            chunk_index=chunk.chunk_index,
            text=chunk.text,
            vector=unpack(chunk.vector),
        )
        for chunk, name in result.all()
    ]


async def lexical_scores(
    *, session: AsyncSession, collection_id: str, query: str, limit: int = 200
) -> dict[str, float]:
    """Full-text scores (higher is better, > 0) of the collection's chunks sharing a word
    with ``query``: FTS5 ``-bm25`` on SQLite, ``ts_rank_cd`` on PostgreSQL; any word
    matches (OR), so one rare word is enough to be a hit."""
    terms = sorted({w.lower() for w in _FTS_WORD.findall(query)})[:64]
    if not terms:
        return {}
    if _is_sqlite(session):
        match = " OR ".join(f'"{term}"' for term in terms)
        statement = text(
            "SELECT f.chunk_id, -bm25(chunks_fts) AS score FROM chunks_fts f "
            "JOIN chunks c ON c.id = f.chunk_id "
            "WHERE chunks_fts MATCH :match AND c.collection_id = :collection "
            "ORDER BY bm25(chunks_fts) LIMIT :limit"
        ).bindparams(match=match, collection=collection_id, limit=limit)
    else:
        statement = text(
            "SELECT c.id, ts_rank_cd(to_tsvector('english', c.text), q) AS score "
            "FROM chunks c, to_tsquery('english', :match) q "
            "WHERE c.collection_id = :collection AND to_tsvector('english', c.text) @@ q "
            "ORDER BY score DESC LIMIT :limit"
        ).bindparams(match=" | ".join(terms), collection=collection_id, limit=limit)
    rows = (await session.exec(statement)).all()  # type: ignore[call-overload]
    return {str(chunk_id): float(score) for chunk_id, score in rows if float(score) > 0}
