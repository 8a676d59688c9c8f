"""The ingestion worker: one job per document, off the request path.

``IngestWorker.run(stop)`` loops until ``stop``:

1. ``requeue_expired``: documents left ``running`` by a worker that died
   (SIGKILL, OOM) have an expired lease; they go back to ``queued``, or to
   ``failed`` after ``max_attempts`` claims. A job is never half indexed:
   its chunks are written in the same commit that marks it ``ready``, so an
   interrupted job left nothing behind and simply starts over.
2. ``claim_next``: take the oldest queued document (a conditional update, so
   replicas never take the same one), chunk it (``chunking``), embed the
   chunks in batches of ``batch_size`` with the collection's embedder,
   reporting ``progress`` and renewing the lease after each batch, then
   ``finish_ready``. An ``EmbedError`` or a text without words is ``failed``
   with a user-safe message.
3. Metering: each ready, unmetered document publishes one ``UsageRecorded``
   on JetStream (``operation`` embeddings, ``model`` "" = no model tokens,
   ``sku_usage`` [``rag.ingest.tokens``: the tokens embedded]); its event id
   is derived from the document id, so a re-publish after a crash is
   de-duplicated by the stream and billed once. ``metered`` is set after the
   JetStream ack. A router-backed embedder's own calls are billed by the
   router as embeddings on top.

When nothing is queued the worker sleeps ``poll_s`` (or until ``wake`` is
called, which the add handler does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import nats.errors
from nats.js import JetStreamContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects
from gateway_common.events import SkuQuantity, TokenUsage, UsageRecorded

from .chunking import chunk_text
from .embed import Embedders, EmbedError, Payer
from .metrics import Outcome, RagMetrics
from .store import repo
from .store.models import Collection, Document

__all__ = ["INGEST_SKU", "IngestWorker", "usage_event"]

log = logging.getLogger(__name__)

#: The catalog SKU ingestion is metered as (per embedded token).
INGEST_SKU = "rag.ingest.tokens"

_EVENT_NAMESPACE = uuid.UUID("6f1b7a52-35f2-4d7e-9a43-5b0c2d7e8a11")


def usage_event(document: Document, *, embedder: str) -> UsageRecorded:
    """The usage event of an ingested document (id stable per document)."""
    return UsageRecorded(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, f"ingest:{document.id}").hex,
        request_id=f"ingest-{document.id}",
        project_id=document.project_id,
        api_key_id=document.api_key_id,
        operation="embeddings",
        model="",
        provider="rag",
        deployment=embedder,
        usage=TokenUsage(),
        sku_usage=(SkuQuantity(sku=INGEST_SKU, quantity=document.embedding_tokens),),
    )


class IngestWorker:
    """Runs ingestion jobs (see module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        embedders: Embedders,
        *,
        chunk_words: int,
        chunk_overlap: int,
        batch_size: int,
        lease_s: float,
        max_attempts: int,
        poll_s: float,
        metrics: RagMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._js = js
        self._embedders = embedders
        self._chunk_words = chunk_words
        self._chunk_overlap = chunk_overlap
        self._batch_size = batch_size
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for queued work now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Process jobs until ``stop``; a database outage is logged and retried."""
        while not stop.is_set():
            busy = False
            try:
                busy = await self.step()
            except SQLAlchemyError as exc:
                log.warning("ingestion step failed, retrying: %s", exc)
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait(
                            {waiter, stopper},
                            timeout=self._poll_s,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiter.cancel()
                        stopper.cancel()

    async def step(self) -> bool:
        """Requeue expired jobs, meter finished ones, run one job; True if a job ran."""
        async with self._sessions() as session:
            requeued, failed = await repo.requeue_expired(
                session=session, max_attempts=self._max_attempts
            )
        if requeued or failed:
            log.warning("ingestion: %d interrupted jobs requeued, %d failed", requeued, failed)
        await self._meter()
        async with self._sessions() as session:
            if self._metrics is not None:
                self._metrics.expired(requeued=requeued, failed=failed)
                self._metrics.queue_depth(await repo.queued_count(session=session))
            document = await repo.claim_next(session=session, lease_s=self._lease_s)
            if document is None:
                return False
            collection = await session.get(Collection, document.collection_id)
        started = time.perf_counter()
        outcome: Outcome = "abandoned"
        if collection is not None:
            outcome = await self._ingest(document, collection)
        if self._metrics is not None:
            self._metrics.job_ended(outcome, time.perf_counter() - started)
        await self._meter()
        return True

    async def _ingest(self, document: Document, collection: Collection) -> Outcome:
        """Run one claimed job; how it ended."""
        pieces = chunk_text(document.content, size=self._chunk_words, overlap=self._chunk_overlap)
        if not pieces:
            await self._fail(document.id, "the document has no text to index")
            return "failed"
        payer = Payer(
            project_id=document.project_id,
            request_id=f"ingest-{document.id}",
            api_key_id=document.api_key_id,
        )
        chunks: list[repo.NewChunk] = []
        tokens = 0
        try:
            embedder = self._embedders.embedder_for(collection.embedding_model)
            for start in range(0, len(pieces), self._batch_size):
                batch = pieces[start : start + self._batch_size]
                embedded = await embedder.embed(batch, payer=payer)
                tokens += embedded.tokens
                chunks += [
                    repo.NewChunk(text=piece, vector=vector)
                    for piece, vector in zip(batch, embedded.vectors, strict=True)
                ]
                async with self._sessions() as session:
                    alive = await repo.set_progress(
                        session=session,
                        document_id=document.id,
                        progress=round(0.95 * len(chunks) / len(pieces), 4),
                        lease_s=self._lease_s,
                    )
                if not alive:
                    log.info("ingestion of %s abandoned: document gone", document.id)
                    return "abandoned"
        except EmbedError as exc:
            await self._fail(document.id, exc.message)
            return "failed"
        async with self._sessions() as session:
            done = await repo.finish_ready(
                session=session, document_id=document.id, chunks=chunks, tokens=tokens
            )
        if not done:
            return "abandoned"
        log.info("ingested %s: %d chunks, %d tokens", document.id, len(chunks), tokens)
        return "ready"

    async def _fail(self, document_id: str, error: str) -> None:
        async with self._sessions() as session:
            await repo.finish_failed(session=session, document_id=document_id, error=error)
        log.warning("ingestion of %s failed: %s", document_id, error)

    async def _meter(self) -> None:
        async with self._sessions() as session:
            pending = await repo.unmetered(session=session)
            models = {row.id: (await session.get(Collection, row.collection_id)) for row in pending}
        for document in pending:
            collection = models.get(document.id)
            embedder = collection.embedding_model if collection is not None else ""
            event = usage_event(document, embedder=embedder)
            try:
                await self._js.publish(
                    subjects.USAGE_RECORDED,
                    event.to_bytes(),
                    timeout=5.0,
                    headers={"Nats-Msg-Id": event.event_id},
                )
            except nats.errors.Error as exc:
                log.warning("usage of %s not acknowledged, retrying: %s", document.id, exc)
                return
            async with self._sessions() as session:
                await repo.mark_metered(session=session, document_id=document.id)
