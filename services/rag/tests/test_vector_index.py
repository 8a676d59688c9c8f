"""The vector index (sqlite-vec / pgvector) on both backends: written on ingest, deleted with
the chunk, backfilled by the migration, and ranking exactly as the exhaustive path does.

PostgreSQL cases skip, saying so, when the server has no pgvector (``make pg-deps``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import db
from rag.embed import HashingEmbedder
from rag.main import MIGRATIONS_DIR
from rag.retrieve import rank
from rag.store import repo, vectors

TOPICS = [
    "laptops are ordered through the IT service desk with a manager approval",
    "expense reports are filed within thirty days with receipts attached",
    "the office opens at eight and badges are issued by reception",
    "parental leave lasts sixteen weeks and is requested from human resources",
    "production incidents page the on call engineer through the alerting tool",
    "passwords rotate every ninety days and need a hardware security key",
]
QUERIES = ["how do I get a new laptop", "when is the office open", "who is paged for incidents"]


@pytest.fixture
async def session(db_url: str) -> AsyncIterator[AsyncSession]:
    db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="rag")
    engine = db.create_engine(db_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as opened:
            conn = await opened.connection()
            reason = await conn.run_sync(vectors.unavailable_reason)
            if reason is not None:
                pytest.skip(f"vector index unavailable on {engine.dialect.name}: {reason}")
            await opened.commit()
            yield opened
    finally:
        await engine.dispose()


@pytest.fixture
def no_index() -> Iterator[None]:
    vectors.disable("test: index off")
    try:
        yield
    finally:
        vectors.disable(None)


async def _ready_document(session: AsyncSession, project: str, texts: list[str]) -> tuple[str, str]:
    collection = await repo.create_collection(
        session=session, project_id=project, name="kb", description="", embedding_model="h"
    )
    assert collection is not None
    document, _ = await repo.add_document(
        session=session,
        collection=collection,
        name="doc",
        content=" ".join(texts),
        content_hash=f"{project}-hash",
        api_key_id="",
    )
    claimed = await repo.claim_next(session=session, lease_s=30)
    assert claimed is not None and claimed.id == document.id
    embedder = HashingEmbedder()
    pieces = [repo.NewChunk(text=t, vector=embedder.vector(t)) for t in texts]
    assert await repo.finish_ready(
        session=session, document_id=document.id, chunks=pieces, tokens=1
    )
    return collection.id, document.id


async def _index_rows(session: AsyncSession, collection_id: str) -> int:
    statement = text("SELECT count(*) FROM chunks_vec_512 WHERE collection_id = :c")
    result = await session.exec(statement.bindparams(c=collection_id))  # type: ignore[call-overload]
    return int(result.one()[0])


async def test_index_ranks_like_the_exhaustive_path_and_follows_deletes(
    session: AsyncSession,
) -> None:
    collection_id, document_id = await _ready_document(session, "p1", TOPICS * 20)
    other_id, _ = await _ready_document(session, "p2", TOPICS)
    await session.commit()
    assert await _index_rows(session, collection_id) == len(TOPICS) * 20
    embedder = HashingEmbedder()
    for query in QUERIES:
        vector = embedder.vector(query)
        lexical = await repo.lexical_scores(
            session=session, collection_id=collection_id, query=query
        )
        near = await repo.nearest(
            session=session, collection_id=collection_id, vector=vector, top_k=5
        )
        assert near is not None and len(near) == vectors.POOL_SIZE
        pool = await repo.candidates(
            session=session, collection_id=collection_id, only=[*near, *lexical]
        )
        every = await repo.candidates(session=session, collection_id=collection_id)
        assert {c.chunk_id for c in pool} < {c.chunk_id for c in every}
        assert rank(vector, pool, lexical, top_k=5) == rank(vector, every, lexical, top_k=5)
    deleted = await repo.delete_document(
        session=session, project_id="p1", collection_id=collection_id, document_id=document_id
    )
    assert deleted is not None
    assert await _index_rows(session, collection_id) == 0
    assert await _index_rows(session, other_id) == len(TOPICS)


async def test_reconcile_backfills_chunks_written_without_the_index(
    db_url: str, session: AsyncSession
) -> None:
    vectors.disable("test: written before the index existed")
    try:
        collection_id, _ = await _ready_document(session, "p3", TOPICS)
        await session.commit()
    finally:
        vectors.disable(None)
    conn = await session.connection()
    assert await conn.run_sync(vectors.reconcile) == len(TOPICS)
    await session.commit()
    assert await _index_rows(session, collection_id) == len(TOPICS)
    conn = await session.connection()
    assert await conn.run_sync(vectors.reconcile) == 0


async def test_disabled_index_falls_back_to_every_chunk(db_url: str, no_index: None) -> None:
    db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="rag")
    engine = db.create_engine(db_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            collection_id, _ = await _ready_document(session, "p4", TOPICS)
            vector = HashingEmbedder().vector("laptop")
            near = await repo.nearest(
                session=session, collection_id=collection_id, vector=vector, top_k=5
            )
            assert near is None
    finally:
        await engine.dispose()


def test_sqlite_vec_load_failure_is_a_reason_not_an_error() -> None:
    conn = sqlite3.connect(":memory:")
    reason = vectors.load_sqlite_vec(conn, path="/nonexistent/vec0")
    assert reason is not None and "vectors are ranked in Python" in reason
    assert vectors.load_sqlite_vec(conn) is None
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
