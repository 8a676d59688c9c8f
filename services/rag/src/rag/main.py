"""Rag's composition root: ``run(settings, stop)`` and the process entry point.

``run`` opens the shared runtime (migrations, engine, NATS, health, probes),
then builds: the router channel (only used by router-backed collections) ->
``Embedders`` -> the ingestion worker (``ingest``) -> the request/reply
handlers (``handlers``), and runs the worker until ``stop``. Shutdown is the
reverse: handlers drain, the worker finishes its step, the channel closes,
then the runtime unwinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import grpc

from gateway.router.v1 import router_pb2_grpc
from gateway_common import runtime
from gateway_common.grpc import channel_options

from .config import RagSettings
from .embed import HASH_MODEL, Embedders
from .handlers import RagResponder
from .ingest import IngestWorker

__all__ = ["MIGRATIONS_DIR", "main", "run"]

#: services/rag/migrations (the package lives in services/rag/src/rag).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


async def run(settings: RagSettings, stop: asyncio.Event) -> None:
    """Serve health, retrieval and collections, and ingest, until ``stop`` is set."""
    async with runtime.open_runtime(settings, service="rag", migrations_dir=MIGRATIONS_DIR) as rt:
        channel = grpc.aio.insecure_channel(settings.router_addr, options=channel_options())
        try:
            embedders = Embedders(
                default=HASH_MODEL if settings.embedder == "hash" else settings.embedding_model,
                stub=router_pb2_grpc.RouterStub(channel),
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
            )
            responder = RagResponder(rt.sessions, embedders, worker, hybrid=settings.hybrid)
            await responder.start(rt.nc)
            try:
                await worker.run(stop)
            finally:
                await responder.aclose()
        finally:
            await channel.close()


def main(argv: Sequence[str]) -> int:
    """``python -m rag [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="rag",
        settings_factory=RagSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
