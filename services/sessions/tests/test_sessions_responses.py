"""Stored responses over NATS request/reply, against the real service on both backends.

``sessions.main.run`` runs in-process on a private nats-server; the tests
speak only the wire contract of ``gateway_common.responses_store``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from gateway_common import db, subjects
from gateway_common.responses_store import (
    PutResponse,
    ResponseKey,
    StoredResponseRecord,
    StoreReply,
)
from gateway_common.testing import health_reply, wait_for
from sessions.config import SessionsSettings
from sessions.main import MIGRATIONS_DIR, run
from sessions.store import repo

pytestmark = pytest.mark.timeout(60)


def _record(
    response_id: str, project_id: str = "proj-a", *, created_at: int | None = None
) -> StoredResponseRecord:
    created = int(time.time()) if created_at is None else created_at
    output = [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "7", "annotations": []}],
        }
    ]
    return StoredResponseRecord(
        id=response_id,
        project_id=project_id,
        model="mock-reasoning",
        previous_response_id=None,
        input_items=[
            {
                "id": "msg_0",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "2 + 5?"}],
            }
        ],
        response={"id": response_id, "object": "response", "output": output, "created_at": created},
        created_at=created,
    )


async def _ask(nc: Client, subject: str, payload: PutResponse | ResponseKey) -> StoreReply:
    reply = await nc.request(subject, payload.to_bytes(), timeout=5)
    return StoreReply.model_validate_json(reply.data)


@pytest.fixture
async def nc(nats_url: str, db_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    """A connection to NATS with the sessions service running behind it."""
    settings = SessionsSettings(nats_url=nats_url, database_url=db_url, data_dir=tmp_path)
    stop = asyncio.Event()
    service = asyncio.create_task(run(settings, stop))
    client = await nats.connect(nats_url)
    try:
        await wait_for(lambda: health_reply(client, "sessions"), timeout_s=30)
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(service, 20)
        await client.close()


async def test_put_then_get_returns_the_record(nc: Client) -> None:
    record = _record("resp_put_get")
    assert (await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=record))).status == "ok"
    # Idempotent: the same put again is fine.
    assert (await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=record))).status == "ok"
    reply = await _ask(
        nc, subjects.RESPONSES_GET, ResponseKey(project_id="proj-a", response_id=record.id)
    )
    assert reply.status == "ok"
    assert reply.record == record


async def test_another_projects_response_is_not_found_and_not_deleted(nc: Client) -> None:
    record = _record("resp_isolated")
    await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=record))
    foreign = ResponseKey(project_id="proj-b", response_id=record.id)
    assert await _ask(nc, subjects.RESPONSES_GET, foreign) == StoreReply(status="not_found")
    assert await _ask(nc, subjects.RESPONSES_DELETE, foreign) == StoreReply(status="not_found")
    # A put of the same id by another project does not take it over.
    taken = await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=_record(record.id, "proj-b")))
    assert taken.status == "error"
    own = ResponseKey(project_id="proj-a", response_id=record.id)
    assert (await _ask(nc, subjects.RESPONSES_GET, own)).record == record


async def test_delete_removes_it(nc: Client) -> None:
    record = _record("resp_deleted")
    await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=record))
    key = ResponseKey(project_id="proj-a", response_id=record.id)
    assert (await _ask(nc, subjects.RESPONSES_DELETE, key)).status == "ok"
    assert (await _ask(nc, subjects.RESPONSES_GET, key)).status == "not_found"
    assert (await _ask(nc, subjects.RESPONSES_DELETE, key)).status == "not_found"


async def test_unknown_id_and_malformed_request(nc: Client) -> None:
    unknown = ResponseKey(project_id="proj-a", response_id="resp_never")
    assert (await _ask(nc, subjects.RESPONSES_GET, unknown)).status == "not_found"
    reply = await nc.request(subjects.RESPONSES_GET, b"{not json", timeout=5)
    assert StoreReply.model_validate_json(reply.data).status == "error"


async def test_a_put_is_visible_to_a_get_sent_right_after_its_reply(nc: Client) -> None:
    records = [_record(f"resp_burst_{i}") for i in range(20)]
    for record in records:
        assert (await _ask(nc, subjects.RESPONSES_PUT, PutResponse(record=record))).status == "ok"
        key = ResponseKey(project_id="proj-a", response_id=record.id)
        assert (await _ask(nc, subjects.RESPONSES_GET, key)).status == "ok"


async def test_expired_responses_are_invisible_then_purged(db_url: str) -> None:
    db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="sessions")
    engine = db.create_engine(db_url)
    try:
        sessions = db.make_sessionmaker(engine)
        old = _record("resp_old", created_at=int(time.time()) - 7200)
        async with sessions() as session:
            assert await repo.put_response(session=session, record=old, ttl_s=3600)
            assert (
                await repo.get_response(session=session, project_id="proj-a", response_id=old.id)
                is None
            )
            later = datetime.now(UTC) + timedelta(seconds=1)
            assert await repo.purge_expired(session=session, now=later) >= 1
            assert await repo.put_response(session=session, record=old, ttl_s=3600)
    finally:
        await engine.dispose()
