"""Sessions' own metrics on its /metrics port, fed by real requests over NATS.

``sessions.main.run`` runs in-process with a metrics port on a private
nats-server; the test asks over the wire and scrapes as Prometheus would.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_common import subjects
from gateway_common.events import TurnsAppended
from gateway_common.responses_store import ResponseKey, StoreReply
from gateway_common.sessions_history import (
    AppendReply,
    AppendTurns,
    HistoryReply,
    OpenHistory,
    Turn,
)
from gateway_common.testing import free_port, health_reply, wait_for
from sessions.config import SessionsSettings
from sessions.main import run
from sessions.metrics import SUBJECTS, TRANSCRIPT_OUTCOMES

pytestmark = pytest.mark.timeout(60)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _transcripts(outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("switchyard_sessions_transcripts_total", (("outcome", outcome),))


async def test_requests_statuses_and_skipped_duplicate_appends_are_counted(
    nats_url: str, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = SessionsSettings(
        nats_url=nats_url,
        database_url=db_url,
        data_dir=tmp_path,
        metrics_host="127.0.0.1",
        metrics_port=port,
    )
    stop = asyncio.Event()
    service = asyncio.create_task(run(settings, stop))
    client = await nats.connect(nats_url)
    try:
        await wait_for(lambda: health_reply(client, "sessions"), timeout_s=30)

        async def ask(subject: str, payload: bytes) -> bytes:
            return (await client.request(subject, payload, timeout=5)).data

        opened = HistoryReply.model_validate_json(
            await ask(subjects.HISTORY_OPEN, OpenHistory(project_id="p", scope="s").to_bytes())
        )
        assert opened.session_id
        append = AppendTurns(
            project_id="p",
            scope="s",
            session_id=opened.session_id,
            request_id=uuid.uuid4().hex,
            turns=[Turn(role="user", content="secret words")],
        ).to_bytes()
        replies = [AppendReply.model_validate_json(await ask(subjects.HISTORY_APPEND, append))]
        replies += [AppendReply.model_validate_json(await ask(subjects.HISTORY_APPEND, append))]
        assert [r.appended for r in replies] == [True, False]
        missing = ResponseKey(project_id="p", response_id="resp_" + uuid.uuid4().hex)
        gone = StoreReply.model_validate_json(await ask(subjects.RESPONSES_GET, missing.to_bytes()))
        assert gone.status == "not_found"
        bad = HistoryReply.model_validate_json(await ask(subjects.HISTORY_GET, b"{}"))
        assert bad.status == "invalid"

        # The same append as the edge's transcript event: the consumer skips it as a duplicate.
        event = TurnsAppended.model_validate({"append": AppendTurns.model_validate_json(append)})
        await client.jetstream().publish(subjects.SESSION_TURN_APPENDED, event.to_bytes())

        async def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            async with httpx.AsyncClient() as http:
                scrape = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            found = _samples(scrape.text)
            return found if found.get(_transcripts("duplicate")) == 1 else None

        samples = await wait_for(scraped, timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(service, 20)
        await client.close()

    def requests(subject: str, status: str) -> float:
        key = (
            "switchyard_sessions_requests_total",
            (("status", status), ("subject", subject)),
        )
        return samples.get(key, -1.0)

    assert requests(subjects.HISTORY_OPEN, "ok") == 1
    assert requests(subjects.HISTORY_APPEND, "ok") == 2
    assert requests(subjects.RESPONSES_GET, "not_found") == 1
    assert requests(subjects.HISTORY_GET, "invalid") == 1
    assert requests(subjects.RESPONSES_PUT, "ok") == 0  # every subject exported from the start
    assert samples[("switchyard_sessions_history_duplicates_total", ())] == 1
    assert {outcome: samples[_transcripts(outcome)] for outcome in TRANSCRIPT_OUTCOMES} == {
        "appended": 0,
        "duplicate": 1,
        "expired": 0,
        "not_found": 0,
        "invalid": 0,
    }
    counts = {
        dict(labels)["subject"]: value
        for (name, labels), value in samples.items()
        if name == "switchyard_sessions_request_duration_seconds_count"
    }
    assert set(counts) == set(SUBJECTS)
    assert counts[subjects.HISTORY_APPEND] == 2
    # No label carries the session id or content.
    values = " ".join(v for _, labels in samples for _, v in labels)
    assert opened.session_id not in values and "secret" not in values
