"""Session history over NATS request/reply, against the real service on both backends.

``sessions.main.run`` runs in-process on a private nats-server; the tests
speak only the wire contract of ``gateway_common.sessions_history`` (the
reaper's deterministic cases call ``reap_once`` with their own clock).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client
from pydantic import BaseModel
from sqlmodel import col, select

from gateway_common import db, subjects
from gateway_common.events import TurnsAppended
from gateway_common.sessions_history import (
    MAX_SESSION_TURNS,
    AppendReply,
    AppendTurns,
    HistoryKey,
    HistoryReply,
    OpenHistory,
    Turn,
)
from gateway_common.testing import health_reply, wait_for
from sessions.config import SessionsSettings
from sessions.main import MIGRATIONS_DIR, reap_once, run
from sessions.store import history
from sessions.store.models import HistorySession, SessionTurn

pytestmark = pytest.mark.timeout(90)

R = TypeVar("R", bound=BaseModel)
PROJECT, SCOPE = "proj-a", "endpoint-1"


class History:
    """The three history requests, as the edge sends them."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def _ask(self, subject: str, payload: bytes, reply: type[R]) -> R:
        msg = await self.nc.request(subject, payload, timeout=5)
        return reply.model_validate_json(msg.data)

    async def open(
        self,
        session_id: str | None = None,
        *,
        project_id: str = PROJECT,
        scope: str = SCOPE,
        **fields: Any,
    ) -> HistoryReply:
        request = OpenHistory(project_id=project_id, scope=scope, session_id=session_id, **fields)
        return await self._ask(subjects.HISTORY_OPEN, request.to_bytes(), HistoryReply)

    async def append(
        self,
        session_id: str,
        *contents: Any,
        request_id: str | None = None,
        project_id: str = PROJECT,
        scope: str = SCOPE,
        role: str = "user",
        ttl_seconds: int | None = None,
    ) -> AppendReply:
        request = AppendTurns(
            project_id=project_id,
            scope=scope,
            session_id=session_id,
            request_id=request_id or uuid.uuid4().hex,
            turns=[Turn(role=role, content=content) for content in contents],
            ttl_seconds=ttl_seconds,
        )
        return await self._ask(subjects.HISTORY_APPEND, request.to_bytes(), AppendReply)

    async def get(
        self, session_id: str, *, project_id: str = PROJECT, scope: str = SCOPE
    ) -> HistoryReply:
        key = HistoryKey(project_id=project_id, scope=scope, session_id=session_id)
        return await self._ask(subjects.HISTORY_GET, key.to_bytes(), HistoryReply)

    async def publish_transcript(
        self, session_id: str, *contents: Any, request_id: str, msg_id: str | None = None
    ) -> None:
        """Publish an append as the edge's transcript event (``msg_id``: its Nats-Msg-Id,
        another one to get a copy past the stream's duplicate window, as a redelivery is)."""
        append = AppendTurns(
            project_id=PROJECT,
            scope=SCOPE,
            session_id=session_id,
            request_id=request_id,
            turns=[Turn(role="user", content=content) for content in contents],
        )
        event = TurnsAppended(event_id=TurnsAppended.event_id_of(append), append=append)
        await self.nc.jetstream().publish(
            subjects.SESSION_TURN_APPENDED,
            event.to_bytes(),
            headers={"Nats-Msg-Id": msg_id or event.event_id},
        )

    async def contents(self, session_id: str, count: int) -> list[Any]:
        """The session's turn contents once it holds ``count`` turns (polled, bounded)."""

        async def enough() -> list[Any] | None:
            turns = (await self.get(session_id)).turns
            return [t.content for t in turns] if len(turns) >= count else None

        return await wait_for(enough, timeout_s=10)

    async def new_session(self, **fields: Any) -> str:
        opened = await self.open(**fields)
        assert opened.status == "ok" and opened.created and opened.session_id
        return opened.session_id


@pytest.fixture
def start_service(nats_url: str, db_url: str, tmp_path: Path) -> Callable[..., Any]:
    """Starts ``sessions.main.run`` (settings overridable) and yields a ``History`` client."""

    async def start(**overrides: Any) -> AsyncIterator[History]:
        settings = SessionsSettings(
            nats_url=nats_url, database_url=db_url, data_dir=tmp_path, **overrides
        )
        stop = asyncio.Event()
        service = asyncio.create_task(run(settings, stop))
        client = await nats.connect(nats_url)
        try:
            await wait_for(lambda: health_reply(client, "sessions"), timeout_s=30)
            yield History(client)
        finally:
            stop.set()
            await asyncio.wait_for(service, 20)
            await client.close()

    return start


@pytest.fixture
async def hist(start_service: Callable[..., AsyncIterator[History]]) -> AsyncIterator[History]:
    async for client in start_service():
        yield client


async def test_open_append_then_open_and_get_return_the_turns_in_order(hist: History) -> None:
    opened = await hist.open(ttl_seconds=600)
    assert opened.status == "ok" and opened.created and opened.turns == []
    assert opened.session_id is not None and str(uuid.UUID(opened.session_id)) == opened.session_id
    sid = opened.session_id

    first = await hist.append(sid, "What's a qubit?")
    assert first.status == "ok" and first.appended
    parts = [{"type": "text", "text": "A quantum bit."}]
    second = await hist.append(sid, parts, role="assistant")
    assert second.status == "ok" and second.appended
    assert second.expires_at is not None and first.expires_at is not None
    assert second.expires_at >= first.expires_at

    resumed = await hist.open(sid)
    assert resumed.status == "ok" and not resumed.created and resumed.session_id == sid
    assert [(t.seq, t.role, t.content) for t in resumed.turns] == [
        (0, "user", "What's a qubit?"),
        (1, "assistant", parts),
    ]
    assert not resumed.truncated
    got = await hist.get(sid)
    assert got.status == "ok" and got.turns == resumed.turns
    assert (await hist.open(sid, max_turns=1)).turns == resumed.turns[1:]


async def test_fifty_append_then_open_round_trips_each_see_the_turn_before(hist: History) -> None:
    sid = await hist.new_session()
    for i in range(50):
        assert (await hist.append(sid, f"turn {i}", request_id=f"req-{i}")).appended
        opened = await hist.open(sid)
        assert opened.status == "ok"
        assert [t.content for t in opened.turns] == [f"turn {j}" for j in range(i + 1)]


async def test_an_append_by_request_or_transcript_event_stores_its_turns_once(
    hist: History,
) -> None:
    sid = await hist.new_session()
    once = await hist.append(sid, "hi", "there", request_id="req-1")
    again = await hist.append(sid, "hi", "there", request_id="req-1")
    assert (once.appended, again.appended) == (True, False)
    assert again.status == "ok" and again.expires_at == once.expires_at
    # Redeliveries racing each other, and distinct appends racing each other.
    racing = await asyncio.gather(
        *(hist.append(sid, "dup", request_id="req-2") for _ in range(10)),
        *(hist.append(sid, f"distinct {i}") for i in range(10)),
    )
    assert all(reply.status == "ok" for reply in racing)
    assert sum(reply.appended for reply in racing[:10]) == 1
    turns = (await hist.open(sid)).turns
    assert [t.content for t in turns[:2]] == ["hi", "there"]
    assert sorted(str(t.content) for t in turns[2:]) == sorted(
        ["dup", *(f"distinct {i}" for i in range(10))]
    )
    assert [t.seq for t in turns] == list(range(len(turns))) == list(range(13))
    # The same idempotency for the edge's transcript events (durable sessions-history).
    sid = await hist.new_session()
    await hist.publish_transcript(sid, "from the stream", request_id="req-t1")
    assert await hist.contents(sid, 1) == ["from the stream"]
    # The request copy of the same append, then a redelivered event: nothing more stored.
    late = await hist.append(sid, "from the stream", request_id="req-t1")
    assert (late.status, late.appended) == ("ok", False)
    await hist.publish_transcript(sid, "from the stream", request_id="req-t1", msg_id="again")
    # A poison message is terminated, an event of an unknown session acked: neither blocks
    # the consumer, so the next append still arrives, and in order after the first.
    await hist.nc.jetstream().publish(subjects.SESSION_TURN_APPENDED, b"{not json")
    await hist.publish_transcript(str(uuid.uuid4()), "nobody's", request_id="req-t2")
    assert (await hist.append(sid, "by request", request_id="req-t3")).appended
    await hist.publish_transcript(sid, "by request", request_id="req-t3")
    await hist.publish_transcript(sid, "last", request_id="req-t4")
    assert await hist.contents(sid, 3) == ["from the stream", "by request", "last"]

    async def settled() -> bool | None:
        info = await hist.nc.jetstream().consumer_info(
            subjects.TRANSCRIPTS_STREAM, subjects.SESSIONS_DURABLE
        )
        return True if info.num_pending == info.num_ack_pending == 0 else None

    assert await wait_for(settled, timeout_s=10)
    assert [t.seq for t in (await hist.open(sid)).turns] == [0, 1, 2]


async def test_a_session_expires_after_its_ttl_and_open_starts_afresh(hist: History) -> None:
    sid = await hist.new_session(ttl_seconds=1)
    assert (await hist.append(sid, "remember me", ttl_seconds=1)).appended

    async def expired() -> HistoryReply | None:
        reply = await hist.get(sid)
        return reply if reply.status == "expired" else None

    gone = await wait_for(expired, timeout_s=10, interval_s=0.1)
    assert gone.turns == [] and gone.session_id is None
    late = await hist.append(sid, "too late")
    assert (late.status, late.appended) == ("expired", False)
    fresh = await hist.open(sid, ttl_seconds=60)
    assert fresh.status == "expired" and fresh.created and fresh.turns == []
    assert fresh.session_id is not None and fresh.session_id != sid
    assert (await hist.append(fresh.session_id, "new start")).appended
    assert [t.content for t in (await hist.open(fresh.session_id)).turns] == ["new start"]


async def test_another_projects_or_scopes_session_is_not_found_and_untouched(
    hist: History,
) -> None:
    sid = await hist.new_session()
    await hist.append(sid, "mine")
    for who in ({"project_id": "proj-b"}, {"scope": "endpoint-2"}):
        assert (await hist.open(sid, **who)).status == "not_found"
        assert (await hist.get(sid, **who)).status == "not_found"
        assert (await hist.append(sid, "theirs", **who)).status == "not_found"
    for unknown in (str(uuid.uuid4()), "not-a-uuid", ""):
        assert (await hist.open(unknown)).status == "not_found"
        assert (await hist.get(unknown)).status == "not_found"
        assert (await hist.append(unknown, "x")).status == "not_found"
    assert [t.content for t in (await hist.get(sid)).turns] == ["mine"]
    # The same id in upper case is the same session (ids are UUIDs, compared canonically).
    assert (await hist.get(sid.upper())).status == "ok"


async def test_malformed_requests_are_invalid_naming_the_field_not_the_value(
    hist: History,
) -> None:
    sid = await hist.new_session()
    bad_ttl = (
        b'{"project_id":"proj-a","scope":"endpoint-1","session_id":"%s","request_id":"r",'
        b'"turns":[{"role":"user","content":"secret words"}],"ttl_seconds":0}' % sid.encode()
    )
    msg = await hist.nc.request(subjects.HISTORY_APPEND, bad_ttl, timeout=5)
    reply = AppendReply.model_validate_json(msg.data)
    assert reply.status == "invalid" and "ttl_seconds" in reply.message
    assert "secret" not in reply.message
    no_turns = (
        b'{"project_id":"proj-a","scope":"endpoint-1","session_id":"%s","request_id":"r",'
        b'"turns":[]}' % sid.encode()
    )
    msg = await hist.nc.request(subjects.HISTORY_APPEND, no_turns, timeout=5)
    assert AppendReply.model_validate_json(msg.data).status == "invalid"
    for subject in (subjects.HISTORY_OPEN, subjects.HISTORY_GET):
        msg = await hist.nc.request(subject, b"{not json", timeout=5)
        assert HistoryReply.model_validate_json(msg.data).status == "invalid"


async def test_a_session_keeps_its_last_max_turns(hist: History) -> None:
    sid = await hist.new_session()
    everything = [f"t{i}" for i in range(MAX_SESSION_TURNS)]
    assert (await hist.append(sid, *everything)).appended
    assert (await hist.append(sid, "a", "b", "c")).appended
    turns = (await hist.open(sid)).turns
    assert len(turns) == MAX_SESSION_TURNS
    assert (turns[0].seq, turns[0].content) == (3, "t3")
    assert [t.content for t in turns[-3:]] == ["a", "b", "c"]


async def test_a_history_too_big_for_one_message_leaves_out_its_oldest_turns(
    hist: History,
) -> None:
    sid = await hist.new_session()
    big = 400 * 1024
    for mark in "abc":
        assert (await hist.append(sid, mark * big)).appended
    opened = await hist.open(sid)
    assert opened.status == "ok" and opened.truncated
    assert [(t.seq, str(t.content)[0]) for t in opened.turns] == [(1, "b"), (2, "c")]


@pytest.fixture
async def reaping(start_service: Callable[..., AsyncIterator[History]]) -> AsyncIterator[History]:
    """The service with a reaper every 0.1 s that forgets expired sessions at once."""
    async for client in start_service(reaper_interval_s=0.1, history_tombstone_s=0):
        yield client


async def test_the_running_reaper_forgets_an_expired_session(reaping: History) -> None:
    sid = await reaping.new_session(ttl_seconds=1)
    keep = await reaping.new_session(ttl_seconds=600)
    await reaping.append(sid, "short-lived", ttl_seconds=1)
    await reaping.append(keep, "long-lived")

    async def forgotten() -> bool | None:
        return True if (await reaping.get(sid)).status == "not_found" else None

    await wait_for(forgotten, timeout_s=15, interval_s=0.1)
    assert [t.content for t in (await reaping.get(keep)).turns] == ["long-lived"]


async def test_reaping_deletes_turns_keeps_a_tombstone_then_forgets(db_url: str) -> None:
    db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="sessions")
    engine = db.create_engine(db_url)
    try:
        sessions = db.make_sessionmaker(engine)
        now = datetime.now(UTC)
        turns = [Turn(role="user", content=f"t{i}") for i in range(5)]
        ids: dict[str, str] = {}
        for name, ttl in (("short", 60), ("long", 30 * 86_400)):
            async with sessions() as session:
                opened = await history.open_history(
                    session=session,
                    project_id=PROJECT,
                    scope=SCOPE,
                    session_id=None,
                    ttl_s=ttl,
                    now=now,
                )
                assert opened.session is not None
                ids[name] = opened.session.id
                await history.append_turns(
                    session=session,
                    project_id=PROJECT,
                    scope=SCOPE,
                    session_id=ids[name],
                    request_id="r",
                    turns=turns,
                    ttl_s=None,
                    now=now,
                )
        later = now + timedelta(seconds=120)
        # Bounded: one pass with a batch of 2 deletes 2 turns and says there is more.
        async with sessions() as session:
            first = await history.reap_history(
                session=session, now=later, tombstone_s=86_400, batch=2
            )
        assert (first.turns, first.reaped, first.deleted, first.full) == (2, 0, 0, True)
        # (On PostgreSQL the database is shared with the other tests: count only our own rows.)
        rest = await reap_once(sessions, tombstone_s=86_400, now=later)
        assert rest.turns >= 3 and rest.reaped >= 1 and not rest.full

        async def get(name: str, at: datetime) -> history.History:
            async with sessions() as session:
                return await history.get_history(
                    session=session,
                    project_id=PROJECT,
                    scope=SCOPE,
                    session_id=ids[name],
                    now=at,
                )

        assert (await get("short", later)).status == "expired"
        assert len((await get("long", later)).turns) == 5
        async with sessions() as session:
            short = await session.get(HistorySession, ids["short"])
            assert short is not None and short.reaped
            left = await session.exec(
                select(SessionTurn).where(col(SessionTurn.session_id) == short.id)
            )
            assert left.all() == []
        forgotten = await reap_once(sessions, tombstone_s=86_400, now=later + timedelta(days=1))
        assert forgotten.deleted >= 1
        assert (await get("short", later)).status == "not_found"
        assert len((await get("long", later)).turns) == 5
    finally:
        await engine.dispose()


async def test_two_opens_adopting_one_new_id_at_once_share_one_session(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel visitor's first two messages at once (found by the soak): each open sees no
    session under the site's id; the second insert must continue the first's session, not fail."""
    db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="sessions")
    engine = db.create_engine(db_url)
    sessions = db.make_sessionmaker(engine)
    sid, now = str(uuid.uuid4()), datetime.now(UTC)

    async def open_(session: Any) -> history.History:
        return await history.open_history(
            session=session, project_id=PROJECT, scope=SCOPE, session_id=sid, ttl_s=600,
            now=now, adopt=True,
        )  # fmt: skip

    real_start = history._start

    async def competitor_first(session: Any, **fields: Any) -> HistorySession:
        monkeypatch.setattr(history, "_start", real_start)
        async with sessions() as other:
            assert (await open_(other)).created
        return await real_start(session, **fields)

    monkeypatch.setattr(history, "_start", competitor_first)
    try:
        async with sessions() as session:
            second = await open_(session)
    finally:
        await engine.dispose()
    assert (second.status, second.created) == ("ok", False)
    assert second.session is not None and second.session.id == sid
