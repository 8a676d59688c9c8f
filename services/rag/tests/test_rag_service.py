"""``python -m rag`` end to end over real NATS and a real database (both backends).

Collections and documents over request/reply, ingestion to ``ready``, hybrid
query with the right document first, project isolation, idempotent re-add,
the usage event of ``rag.ingest.tokens``, and recovery after a SIGKILL
mid-ingestion (the job ends ``ready`` with all its chunks, or ``failed``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_common import subjects
from gateway_common.events import UsageRecorded
from gateway_common.testing import free_port, health_reply, service_process, wait_for

pytestmark = pytest.mark.timeout(120)

DOCS = {
    "bees.md": "# Bees\n\nHoney bees pollinate flowers and store nectar as honey in wax hives.",
    "rust.txt": "The Rust borrow checker enforces ownership rules so memory stays safe.",
    "tea.txt": "Green tea is best brewed at eighty degrees Celsius for two minutes.",
}


async def _ask(nc: Any, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, orjson.dumps(payload), timeout=10)
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply


async def _ready(nc: Any, project: str, col: str, doc: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = await _ask(
            nc,
            subjects.RAG_DOCUMENT_GET,
            {"project_id": project, "collection_id": col, "document_id": doc},
        )
        if reply["document"]["status"] in ("ready", "failed"):
            return dict(reply["document"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"document {doc} never finished")


def _env(nats_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "NATS_URL": nats_url,
        "GATEWAY_DATABASE_URL": db_url,
        "RAG_INGEST_POLL_S": "0.1",
        **extra,
    }


async def test_collections_ingest_query_isolation(
    nats_url: str, db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "rag.log"
    nc = await nats.connect(nats_url)
    try:
        with service_process("rag", _env(nats_url, db_url), log_path=log) as proc:
            await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
            usage = await nc.subscribe(subjects.USAGE_RECORDED)
            created = await _ask(
                nc, subjects.RAG_COLLECTION_CREATE, {"project_id": "p1", "name": "kb"}
            )
            assert created["status"] == "ok", created
            col = created["collection"]["id"]
            dup = await _ask(nc, subjects.RAG_COLLECTION_CREATE, {"project_id": "p1", "name": "kb"})
            assert dup["status"] == "conflict"
            ids = {}
            for name, text in DOCS.items():
                added = await _ask(
                    nc,
                    subjects.RAG_DOCUMENT_ADD,
                    {"project_id": "p1", "collection_id": col, "name": name, "text": text},
                )
                assert added["status"] == "ok" and added["created"] is True, added
                assert added["document"]["status"] == "queued"
                ids[name] = added["document"]["id"]
            for doc in ids.values():
                assert (await _ready(nc, "p1", col, doc))["status"] == "ready"
            again = await _ask(
                nc,
                subjects.RAG_DOCUMENT_ADD,
                {"project_id": "p1", "collection_id": col, "name": "x", "text": DOCS["rust.txt"]},
            )
            assert again["created"] is False and again["document"]["id"] == ids["rust.txt"]
            assert again["document"]["status"] == "ready"

            query = {"project_id": "p1", "collection_id": col, "query": "who enforces ownership?"}
            found = await _ask(nc, subjects.RAG_QUERY, {**query, "top_k": 2})
            assert found["status"] == "ok", found
            assert found["chunks"][0]["document_id"] == ids["rust.txt"]
            assert len(found["chunks"]) <= 2
            assert all(0 <= c["score"] <= 1 for c in found["chunks"])

            # Another project sees nothing of p1's.
            foreign = {**query, "project_id": "p2"}
            assert (await _ask(nc, subjects.RAG_QUERY, foreign))["status"] == "not_found"
            listed = await _ask(nc, subjects.RAG_COLLECTION_LIST, {"project_id": "p2"})
            assert listed == {"status": "ok", "collections": [], "message": ""}
            key2 = {"project_id": "p2", "collection_id": col}
            for subject in (subjects.RAG_COLLECTION_GET, subjects.RAG_DOCUMENT_LIST):
                assert (await _ask(nc, subject, key2))["status"] == "not_found"
            add2 = await _ask(nc, subjects.RAG_DOCUMENT_ADD, {**key2, "name": "n", "text": "t"})
            assert add2["status"] == "not_found"
            assert (await _ask(nc, subjects.RAG_COLLECTION_DELETE, key2))["status"] == "not_found"
            bad = await _ask(nc, subjects.RAG_QUERY, {**query, "top_k": 0})
            assert bad["status"] == "invalid" and "top_k" in bad["message"]

            # Ingestion is metered once per document as rag.ingest.tokens.
            seen: dict[str, UsageRecorded] = {}
            deadline = time.monotonic() + 20
            while len(seen) < 3 and time.monotonic() < deadline:
                try:
                    msg = await usage.next_msg(timeout=1)
                except TimeoutError:
                    continue
                event = UsageRecorded.model_validate_json(msg.data)
                seen[event.request_id] = event
            assert set(seen) == {f"ingest-{doc}" for doc in ids.values()}
            rust = seen[f"ingest-{ids['rust.txt']}"]
            assert rust.project_id == "p1" and rust.model == ""
            assert [(s.sku, s.quantity) for s in rust.sku_usage] == [
                ("rag.ingest.tokens", len(DOCS["rust.txt"].split()))
            ]

            gone = await _ask(
                nc,
                subjects.RAG_DOCUMENT_DELETE,
                {"project_id": "p1", "collection_id": col, "document_id": ids["rust.txt"]},
            )
            assert gone["status"] == "ok"
            after = await _ask(nc, subjects.RAG_QUERY, query)
            assert ids["rust.txt"] not in {c["document_id"] for c in after["chunks"]}
            assert (
                await _ask(
                    nc, subjects.RAG_COLLECTION_DELETE, {"project_id": "p1", "collection_id": col}
                )
            )["status"] == "ok"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        await nc.close()


async def test_sigkill_mid_ingest_ends_ready_or_failed(
    nats_url: str, db_url: str, tmp_path: Path
) -> None:
    env = _env(
        nats_url,
        db_url,
        RAG_EMBED_BATCH="1",
        RAG_CHUNK_WORDS="20",
        RAG_CHUNK_OVERLAP="4",
        RAG_INGEST_LEASE_S="1",
    )
    big = " ".join(f"word{i % 997} item{i}" for i in range(3000))
    nc = await nats.connect(nats_url)
    try:
        with service_process("rag", env, log_path=tmp_path / "rag1.log") as proc:
            await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
            col = (
                await _ask(nc, subjects.RAG_COLLECTION_CREATE, {"project_id": "p1", "name": "big"})
            )["collection"]["id"]
            added = await _ask(
                nc,
                subjects.RAG_DOCUMENT_ADD,
                {"project_id": "p1", "collection_id": col, "name": "big.txt", "text": big},
            )
            doc = added["document"]["id"]
            key = {"project_id": "p1", "collection_id": col, "document_id": doc}

            async def running() -> bool | None:
                reply = await _ask(nc, subjects.RAG_DOCUMENT_GET, key)
                return True if reply["document"]["status"] == "running" else None

            await wait_for(running, timeout_s=20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        with service_process("rag", env, log_path=tmp_path / "rag2.log") as proc:
            await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
            final = await _ready(nc, "p1", col, doc)
            assert final["status"] in ("ready", "failed")
            if final["status"] == "ready":
                words = len(big.split())
                assert final["chunk_count"] == -(-(words - 4) // 16)
                assert final["progress"] == 1.0
            else:
                assert final["error"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    finally:
        await nc.close()


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_ingestion_job_metrics_are_scraped(
    nats_url: str, db_url: str, tmp_path: Path
) -> None:
    """Jobs by outcome, their durations and the queue depth, read from rag's /metrics."""
    port = free_port()
    env = _env(nats_url, db_url, RAG_METRICS_PORT=str(port))
    nc = await nats.connect(nats_url)
    try:
        with service_process("rag", env, log_path=tmp_path / "rag.log"):
            await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
            before = _samples(port)
            assert before[("switchyard_rag_ingest_jobs_total", (("outcome", "ready"),))] == 0
            assert ("switchyard_rag_ingest_queue_depth", ()) in before
            created = await _ask(
                nc, subjects.RAG_COLLECTION_CREATE, {"project_id": "pm", "name": "kb"}
            )
            col = created["collection"]["id"]
            docs = []
            for name, text in DOCS.items():
                added = await _ask(
                    nc,
                    subjects.RAG_DOCUMENT_ADD,
                    {"project_id": "pm", "collection_id": col, "name": name, "text": text},
                )
                docs.append(added["document"]["id"])
            for doc in docs:
                assert (await _ready(nc, "pm", col, doc))["status"] == "ready"

            def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
                now = _samples(port)
                ready = now[("switchyard_rag_ingest_jobs_total", (("outcome", "ready"),))]
                drained = now[("switchyard_rag_ingest_queue_depth", ())] == 0
                return now if ready == len(docs) and drained else None

            deadline = time.monotonic() + 20
            while (after := counted()) is None:
                assert time.monotonic() < deadline, "ready jobs were never counted"
                await asyncio.sleep(0.1)
            ready = (("outcome", "ready"),)
            assert after[("switchyard_rag_ingest_duration_seconds_count", ready)] == len(docs)
            assert after[("switchyard_rag_ingest_duration_seconds_sum", ready)] > 0
            assert after[("switchyard_rag_ingest_jobs_total", (("outcome", "failed"),))] == 0
            assert after[("switchyard_rag_ingest_queue_depth", ())] == 0
    finally:
        await nc.close()
