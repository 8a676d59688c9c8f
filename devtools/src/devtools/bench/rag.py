"""``python -m devtools.bench.rag`` (``make bench-rag``): retrieval quality and speed of rag.

Everything runs **in-process** on rag's own functions (``rag.store.repo``,
``rag.chunking``, ``rag.embed``, ``rag.retrieve``) against real databases
migrated by rag's own migrations; no NATS, no process boundary, so the
figures are the storage and ranking cost, not the request/reply overhead.
``ingest`` below is the worker's path (claim -> chunk -> embed -> one commit)
without the lease renewals, and ``query`` is the query handler's path
(embed -> full-text scores -> the vector index's nearest -> candidates -> ``rank``;
``--no-vector-index`` ranks every chunk in Python, as before the index).

Two parts:

1. Quality: the labelled set in ``rag_set/`` (documents of a fictional bike
   shop, questions each labelled with the id of the document that answers
   it) is ingested into a fresh SQLite collection per embedder; every question
   is asked with top_k 10 and scored by ``recall_at_k`` (k = 5) and ``mrr``,
   with hybrid ranking on and off. The local model rows need rag's ``local``
   extra; without it they are reported as skipped.
2. Scale: ``--chunks`` synthetic chunks (default 10,000; 100 documents of
   100 chunks) with the hashing embedder, on SQLite and on PostgreSQL (a
   throwaway database on 127.0.0.1:5432): ingest throughput (chunks/s,
   chunking + embedding + the one commit) and the latency of ``--queries``
   queries (p50, p99; hybrid on).

Loops are bounded by the set size and the two counts. ``--write`` puts the
report into docs/benchmarks.md between its markers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import db
from gateway_common.testing import PostgresUnavailable, throwaway_postgres
from rag.chunking import chunk_text
from rag.embed import HASH_MODEL, LOCAL_MODEL, Embedder, Embedders, EmbedError, Payer
from rag.main import MIGRATIONS_DIR
from rag.retrieve import Ranked, rank
from rag.store import repo, vectors
from rag.store.models import Collection

from .layout import REPO_ROOT

__all__ = [
    "LabelledSet",
    "load_set",
    "main",
    "mrr",
    "recall_at_k",
    "set_problems",
]

SET_DIR = Path(__file__).resolve().parent / "rag_set"
DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- BEGIN make bench-rag: generated, do not edit by hand -->"
END = "<!-- END make bench-rag -->"
_PAYER = Payer(project_id="bench", request_id="bench-rag")
_PROJECT = "bench"
_log = logging.getLogger("devtools.bench.rag")


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """Documents (id -> (name, text)) and questions ((text, answering document id))."""

    documents: dict[str, tuple[str, str]]
    questions: list[tuple[str, str]]


def load_set(directory: Path = SET_DIR) -> LabelledSet:
    """The labelled set from ``documents.json`` and ``questions.json`` in ``directory``."""
    docs = json.loads((directory / "documents.json").read_text())
    questions = json.loads((directory / "questions.json").read_text())
    return LabelledSet(
        documents={d["id"]: (d["name"], d["text"]) for d in docs},
        questions=[(q["q"], q["doc"]) for q in questions],
    )


def set_problems(
    labelled: LabelledSet, *, min_docs: int = 30, min_questions: int = 60
) -> list[str]:
    """What is wrong with ``labelled`` (empty when it is well-formed)."""
    problems = [
        f"question {text!r} answers with unknown document {doc!r}"
        for text, doc in labelled.questions
        if doc not in labelled.documents
    ]
    if len(labelled.documents) < min_docs:
        problems.append(f"{len(labelled.documents)} documents, fewer than {min_docs}")
    if len(labelled.questions) < min_questions:
        problems.append(f"{len(labelled.questions)} questions, fewer than {min_questions}")
    texts = [text for text, _ in labelled.documents.values()]
    if len(set(texts)) != len(texts):
        problems.append("two documents have the same text")
    return problems


def _first_rank(ranked_docs: Sequence[str], answer: str) -> int | None:
    """1-based position of the first chunk of ``answer`` (None if absent)."""
    for position, doc in enumerate(ranked_docs, start=1):
        if doc == answer:
            return position
    return None


def recall_at_k(results: Sequence[Sequence[str]], answers: Sequence[str], k: int) -> float:
    """Share of questions whose answering document is among their first ``k`` results.

    ``results[i]`` is the document id of each returned chunk for question i,
    best first (a document may appear more than once).
    """
    if not answers:
        return 0.0
    hits = sum(
        1
        for ranked, answer in zip(results, answers, strict=True)
        if (position := _first_rank(ranked, answer)) is not None and position <= k
    )
    return hits / len(answers)


def mrr(results: Sequence[Sequence[str]], answers: Sequence[str]) -> float:
    """Mean reciprocal rank of the answering document (0 for a question that missed it)."""
    if not answers:
        return 0.0
    total = 0.0
    for ranked, answer in zip(results, answers, strict=True):
        position = _first_rank(ranked, answer)
        total += 1.0 / position if position is not None else 0.0
    return total / len(answers)


async def ingest(
    sessions: async_sessionmaker[AsyncSession],
    embedder: Embedder,
    documents: Sequence[tuple[str, str]],
    *,
    batch: int = 32,
) -> tuple[Collection, int]:
    """A new collection holding ``documents`` (name, text), all ready; and its chunk count."""
    async with sessions() as session:
        collection = await repo.create_collection(
            session=session,
            project_id=_PROJECT,
            name=f"bench-{time.monotonic_ns()}",
            description="",
            embedding_model=embedder.model,
        )
        assert collection is not None
        for name, text in documents:
            await repo.add_document(
                session=session,
                collection=collection,
                name=name,
                content=text,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                api_key_id="",
            )
    total = 0
    for _ in range(len(documents)):
        async with sessions() as session:
            document = await repo.claim_next(session=session, lease_s=600)
        if document is None:
            break
        pieces = chunk_text(document.content)
        chunks: list[repo.NewChunk] = []
        for start in range(0, len(pieces), batch):
            embedded = await embedder.embed(pieces[start : start + batch], payer=_PAYER)
            chunks += [
                repo.NewChunk(text=piece, vector=vector)
                for piece, vector in zip(
                    pieces[start : start + batch], embedded.vectors, strict=True
                )
            ]
        async with sessions() as session:
            await repo.finish_ready(
                session=session, document_id=document.id, chunks=chunks, tokens=0
            )
        total += len(chunks)
    return collection, total


async def query(
    sessions: async_sessionmaker[AsyncSession],
    embedder: Embedder,
    collection: Collection,
    text: str,
    *,
    top_k: int,
    hybrid: bool,
) -> list[Ranked]:
    """The query handler's ranking of ``text`` in ``collection``."""
    embedded = await embedder.embed([text], payer=_PAYER)
    async with sessions() as session:
        lexical = (
            await repo.lexical_scores(session=session, collection_id=collection.id, query=text)
            if hybrid
            else {}
        )
        near = await repo.nearest(
            session=session, collection_id=collection.id, vector=embedded.vectors[0], top_k=top_k
        )
        pool = await repo.candidates(
            session=session,
            collection_id=collection.id,
            only=None if near is None else [*near, *lexical],
        )
    return rank(embedded.vectors[0], pool, lexical, top_k=top_k, hybrid=hybrid)


async def _open(url: str) -> tuple[async_sessionmaker[AsyncSession], object]:
    await asyncio.to_thread(db.migrate, url=url, migrations_dir=MIGRATIONS_DIR, service="rag")
    engine = db.create_engine(url)
    return db.make_sessionmaker(engine), engine


async def quality(url: str, embedder: Embedder, labelled: LabelledSet) -> dict[str, float]:
    """recall@5 and MRR (top 10) of ``embedder`` on the labelled set, hybrid on and off."""
    sessions, engine = await _open(url)
    try:
        docs = [(doc_id, text) for doc_id, (_, text) in labelled.documents.items()]
        collection, _ = await ingest(sessions, embedder, docs)
        answers = [doc for _, doc in labelled.questions]
        figures: dict[str, float] = {}
        for hybrid in (True, False):
            results = []
            for text, _ in labelled.questions:
                ranked = await query(sessions, embedder, collection, text, top_k=10, hybrid=hybrid)
                results.append([item.candidate.document_name for item in ranked])
            label = "on" if hybrid else "off"
            figures[f"recall5_{label}"] = recall_at_k(results, answers, 5)
            figures[f"mrr_{label}"] = mrr(results, answers)
        return figures
    finally:
        await engine.dispose()  # type: ignore[attr-defined]


def _synthetic(
    chunks: int, per_doc: int = 100, seed: int = 15
) -> tuple[list[tuple[str, str]], list[str]]:
    """Documents of random words that ``chunk_text`` cuts into ``per_doc`` chunks each."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnoprstuw", k=rng.randint(3, 9))) for _ in range(5000)
    ]
    words_per_doc = 160 * (per_doc - 1) + 200  # the default 200-word chunks, 40 overlap
    count = max(1, chunks // per_doc)
    return [
        (f"synthetic-{i}", " ".join(rng.choices(vocabulary, k=words_per_doc))) for i in range(count)
    ], vocabulary


async def scale(url: str, *, chunks: int, queries: int) -> dict[str, float]:
    """Ingest throughput and query latency of ``chunks`` synthetic chunks (hashing embedder)."""
    documents, vocabulary = _synthetic(chunks)
    sessions, engine = await _open(url)
    embedder = Embedders(default=HASH_MODEL, router=None, timeout_s=1).embedder_for(HASH_MODEL)
    try:
        started = time.perf_counter()
        collection, stored = await ingest(sessions, embedder, documents)
        ingest_s = time.perf_counter() - started
        rng = random.Random(7)
        latencies = []
        for _ in range(queries):
            text = " ".join(rng.choices(vocabulary, k=6))
            began = time.perf_counter()
            await query(sessions, embedder, collection, text, top_k=5, hybrid=True)
            latencies.append((time.perf_counter() - began) * 1000)
        latencies.sort()
        p99_index = min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))
        return {
            "chunks": float(stored),
            "chunks_per_s": stored / ingest_s,
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[p99_index],
        }
    finally:
        await engine.dispose()  # type: ignore[attr-defined]


async def run(args: argparse.Namespace) -> str:
    """Run both parts and return the Markdown report."""
    labelled = load_set()
    problems = set_problems(labelled)
    if problems:
        raise SystemExit("labelled set is malformed: " + "; ".join(problems))
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench-rag` "
        f"(`python -m devtools.bench.rag {' '.join(sys.argv[1:])}`); rag's functions "
        "in-process (not over NATS), see the module docstring.",
        "",
        f"Quality: {len(labelled.questions)} questions over {len(labelled.documents)} documents "
        "(devtools/src/devtools/bench/rag_set/), top_k 10, SQLite.",
        "",
        "| embedder | hybrid | recall@5 | MRR |",
        "| --- | --- | --- | --- |",
    ]
    embedders = Embedders(default=HASH_MODEL, router=None, timeout_s=1)
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as tmp:
        for index, model in enumerate((LOCAL_MODEL, HASH_MODEL)):
            url = f"sqlite+aiosqlite:///{tmp}/quality-{index}.db"
            try:
                figures = await quality(url, embedders.embedder_for(model), labelled)
            except EmbedError as exc:
                lines.append(f"| `{model}` | - | skipped: {exc.message} | |")
                continue
            for label in ("on", "off"):
                lines.append(
                    f"| `{model}` | {label} | {figures[f'recall5_{label}']:.3f} "
                    f"| {figures[f'mrr_{label}']:.3f} |"
                )
        lines += [
            "",
            f"Scale: {args.chunks:,} synthetic chunks (200 words), `{HASH_MODEL}`, hybrid on, "
            f"{args.queries} queries of 6 words, top_k 5.",
            "",
            "| database | chunks | ingest chunks/s | query p50 ms | query p99 ms |",
            "| --- | --- | --- | --- | --- |",
        ]
        backends: list[tuple[str, str | None]] = [
            ("SQLite", f"sqlite+aiosqlite:///{tmp}/scale.db"),
            ("PostgreSQL", None),
        ]
        for name, sqlite_url in backends:
            try:
                if sqlite_url is None:
                    with throwaway_postgres("bench_rag") as pg_url:
                        figures = await scale(pg_url, chunks=args.chunks, queries=args.queries)
                else:
                    figures = await scale(sqlite_url, chunks=args.chunks, queries=args.queries)
            except PostgresUnavailable as exc:
                lines.append(f"| {name} | skipped: {exc} | | | |")
                continue
            lines.append(
                f"| {name} | {figures['chunks']:,.0f} | {figures['chunks_per_s']:,.0f} "
                f"| {figures['p50_ms']:,.1f} | {figures['p99_ms']:,.1f} |"
            )
    return "\n".join(lines)


def write_section(report: str, path: Path = DOC_PATH) -> None:
    """Replace the generated block in ``path`` (appended the first time)."""
    block = f"{BEGIN}\n{report}\n{END}"
    content = path.read_text()
    if BEGIN in content and END in content:
        head, rest = content.split(BEGIN, 1)
        content = head + block + rest.split(END, 1)[1]
    else:
        content = content.rstrip("\n") + "\n\n## Retrieval\n\n" + block + "\n"
    path.write_text(content)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the report (and writes it with ``--write``)."""
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.rag", description=__doc__)
    parser.add_argument("--chunks", type=int, default=10_000, help="synthetic chunks (scale)")
    parser.add_argument("--queries", type=int, default=30, help="timed queries per database")
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    parser.add_argument(
        "--no-vector-index", action="store_true", help="no sqlite-vec / pgvector (exhaustive)"
    )
    args = parser.parse_args(argv)
    if args.no_vector_index:
        vectors.disable("--no-vector-index")
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_section(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
