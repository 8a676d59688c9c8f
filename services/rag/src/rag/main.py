"""Rag's composition root: ``run(settings, stop)`` and the process entry point.

``run`` opens the shared runtime (migrations, engine, NATS, health, probes),
then builds: the router link (its channel opened by the first router-backed
embedding) ->
``Embedders`` -> the ingestion worker (``ingest``) -> the request/reply
handlers (``handlers``), and runs the worker until ``stop``. Shutdown is the
reverse: handlers drain, the worker finishes its step, the channel closes,
then the runtime unwinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway_common import runtime

from .config import RagSettings
from .embed import HASH_MODEL, LOCAL_MODEL, Embedders, RouterLink
from .handlers import RagResponder
from .ingest import IngestWorker
from .metrics import RagMetrics
from .store import vectors

__all__ = ["MIGRATIONS_DIR", "main", "run"]

#: services/rag/migrations (the package lives in services/rag/src/rag).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

#: RAG_EMBEDDER -> the model recorded on new collections ('router': RAG_EMBEDDING_MODEL).
_DEFAULT_MODELS = {"hash": HASH_MODEL, "local": LOCAL_MODEL}


async def run(settings: RagSettings, stop: asyncio.Event) -> None:
    """Serve health, retrieval and collections, and ingest, until ``stop`` is set."""
    if not settings.vector_index:
        vectors.disable("RAG_VECTOR_INDEX is off; vectors are ranked in Python")
    async with runtime.open_runtime(settings, service="rag", migrations_dir=MIGRATIONS_DIR) as rt:
        router = RouterLink(settings.router_addr)
        try:
            embedders = Embedders(
                default=_DEFAULT_MODELS.get(settings.embedder, settings.embedding_model),
                router=router,
                timeout_s=settings.embed_timeout_s,
            )
            worker = IngestWorker(
                rt.sessions,
                rt.js,
                embedders,
                chunk_words=settings.chunk_words,
                chunk_overlap=settings.chunk_overlap,
                batch_size=settings.embed_batch,
                lease_s=settings.ingest_lease_s,
                max_attempts=settings.ingest_max_attempts,
                poll_s=settings.ingest_poll_s,
                metrics=RagMetrics(rt.registry),
            )
            responder = RagResponder(rt.sessions, embedders, worker, hybrid=settings.hybrid)
            await responder.start(rt.nc)
            await rt.serving()
            try:
                # After serving, so start-up (and health's readers) never wait on a backfill;
                # until it commits, chunks written without the index are missing from it.
                async with rt.engine.begin() as conn:
                    await conn.run_sync(vectors.reconcile)
                await worker.run(stop)
            finally:
                await responder.aclose()
        finally:
            await router.aclose()


def main(argv: Sequence[str]) -> int:
    """``python -m rag [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="rag",
        settings_factory=RagSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
