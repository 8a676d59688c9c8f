"""``SessionsClient``'s session-history methods: how each answer (or its absence) maps to an error.

Each test has a private nats-server. The error mapping is driven by scripted
replies on the history subjects (the client's half of the wire contract);
the round trip at the end runs the real sessions service as a process.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from edge.sessions_client import SESSION_EXPIRED, SESSION_NOT_FOUND, SessionsClient
from gateway_common import subjects
from gateway_common.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from gateway_common.events import TurnsAppended
from gateway_common.nats import ensure_streams
from gateway_common.sessions_history import Turn
from gateway_common.testing import health_reply, service_process, wait_for

from .scripted_nats import raised, script

pytestmark = pytest.mark.timeout(60)

SID = str(uuid.uuid4())
HI = [Turn(role="user", content="hi")]

Call = Callable[[SessionsClient], Awaitable[Any]]
CALLS: dict[str, Call] = {
    subjects.HISTORY_OPEN: lambda c: c.open_history("p", "ep", SID),
    subjects.HISTORY_APPEND: lambda c: c.append_turns("p", "ep", SID, HI, request_id="r1"),
    subjects.HISTORY_GET: lambda c: c.history("p", "ep", SID),
}


@pytest.mark.parametrize("subject", list(CALLS))
async def test_no_responder_is_503(nc: Client, subject: str) -> None:
    err = await raised(CALLS[subject], SessionsClient(nc, timeout_s=0.5))
    assert isinstance(err, ServiceUnavailable) and err.http_status == 503
    assert err.message == "The gateway's session store is unavailable. Please retry."


@pytest.mark.parametrize("subject", list(CALLS))
async def test_a_silent_responder_is_503_at_the_deadline(nc: Client, subject: str) -> None:
    await script(nc, subject, None)
    err = await raised(CALLS[subject], SessionsClient(nc, timeout_s=0.2))
    assert isinstance(err, ServiceUnavailable)


@pytest.mark.parametrize("subject", list(CALLS))
@pytest.mark.parametrize(
    "answer", [b'{"status":"error","message":"database error"}', b"{not json", b'{"status":"?"}']
)
async def test_an_error_or_unreadable_reply_is_503(nc: Client, subject: str, answer: bytes) -> None:
    await script(nc, subject, answer)
    err = await raised(CALLS[subject], SessionsClient(nc))
    assert isinstance(err, ServiceUnavailable)


@pytest.mark.parametrize("subject", list(CALLS))
async def test_not_found_is_a_404_naming_session_id(nc: Client, subject: str) -> None:
    await script(nc, subject, b'{"status":"not_found"}')
    err = await raised(CALLS[subject], SessionsClient(nc))
    assert isinstance(err, NotFound) and err.http_status == 404
    assert (err.code, err.param, err.message) == (
        SESSION_NOT_FOUND,
        "session_id",
        "Session not found.",
    )


@pytest.mark.parametrize("subject", [subjects.HISTORY_APPEND, subjects.HISTORY_GET])
async def test_expired_is_a_404_of_its_own_on_append_and_get(nc: Client, subject: str) -> None:
    await script(nc, subject, b'{"status":"expired"}')
    err = await raised(CALLS[subject], SessionsClient(nc))
    assert isinstance(err, NotFound) and err.code == SESSION_EXPIRED


async def test_open_of_an_expired_session_returns_the_fresh_one(nc: Client) -> None:
    fresh = str(uuid.uuid4())
    answer = b'{"status":"expired","session_id":"%s","created":true,"turns":[]}' % fresh.encode()
    await script(nc, subjects.HISTORY_OPEN, answer)
    reply = await SessionsClient(nc).open_history("p", "ep", SID)
    assert (reply.status, reply.session_id, reply.created) == ("expired", fresh, True)


@pytest.mark.parametrize("subject", list(CALLS))
async def test_invalid_is_a_400(nc: Client, subject: str) -> None:
    await script(nc, subject, b'{"status":"invalid","message":"ttl_seconds: too big"}')
    err = await raised(CALLS[subject], SessionsClient(nc))
    assert isinstance(err, InvalidRequest) and err.http_status == 400
    assert err.code == "invalid_session_request" and "ttl_seconds" in err.message


async def test_a_request_that_cannot_be_built_is_a_400_sent_nowhere(nc: Client) -> None:
    await script(nc, subjects.HISTORY_APPEND, b'{"status":"ok","appended":true}')
    client = SessionsClient(nc)
    too_long = client.append_turns("p", "ep", SID, HI, request_id="r", ttl_seconds=10**9)
    err = await raised(lambda _c: too_long, client)
    assert isinstance(err, InvalidRequest) and "ttl_seconds" in err.message
    err = await raised(lambda c: c.append_turns("p", "ep", SID, [], request_id="r"), client)
    assert isinstance(err, InvalidRequest) and "turns" in err.message


async def test_a_turn_over_the_servers_max_payload_is_413(nc: Client) -> None:
    await script(nc, subjects.HISTORY_APPEND, b'{"status":"ok","appended":true}')
    huge = [Turn(role="user", content="x" * (nc.max_payload + 1))]
    client = SessionsClient(nc)
    err = await raised(lambda c: c.append_turns("p", "ep", SID, huge, request_id="r"), client)
    assert isinstance(err, PayloadTooLarge) and err.http_status == 413
    assert err.code == "session_turn_too_large"


async def test_an_append_sessions_does_not_answer_is_kept_by_its_transcript_event(
    nc: Client,
) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    await script(nc, subjects.HISTORY_APPEND, None)  # a responder that never answers
    reply = await SessionsClient(nc, timeout_s=0.3).append_turns(
        "p", "ep", SID, HI, request_id="r-kept"
    )
    assert (reply.status, reply.appended) == ("ok", True)
    kept = await js.get_last_msg(subjects.TRANSCRIPTS_STREAM, subjects.SESSION_TURN_APPENDED)
    event = TurnsAppended.model_validate_json(kept.data or b"")
    assert (event.append.session_id, event.append.request_id) == (SID, "r-kept")
    assert event.append.turns == HI
    assert kept.headers == {"Nats-Msg-Id": event.event_id}
    # Refusals are the reply's even when the event was kept.
    await script(nc, subjects.HISTORY_APPEND, b'{"status":"expired"}')
    err = await raised(CALLS[subjects.HISTORY_APPEND], SessionsClient(nc, timeout_s=0.3))
    assert isinstance(err, NotFound) and err.code == SESSION_EXPIRED


async def test_a_round_trip_against_the_sessions_service(
    nc: Client, private_nats: str, tmp_path: Path
) -> None:
    env = {"NATS_URL": private_nats, "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    log = tmp_path / "sessions.log"
    with service_process("sessions", env, log_path=log):
        await wait_for(lambda: health_reply(nc, "sessions"), timeout_s=30)
        client = SessionsClient(nc)
        opened = await client.open_history("proj", "ep-1", None, ttl_seconds=600)
        assert opened.created and opened.session_id, log.read_text()
        sid = opened.session_id
        turns = [Turn(role="user", content="hi"), Turn(role="assistant", content="hello")]
        # Stored by the request or by its transcript event, whichever landed first.
        assert (
            await client.append_turns("proj", "ep-1", sid, turns, request_id="q1")
        ).status == "ok"
        again = await client.append_turns("proj", "ep-1", sid, turns, request_id="q1")
        assert not again.appended
        resumed = await client.open_history("proj", "ep-1", sid)
        assert [(t.role, t.content) for t in resumed.turns] == [
            ("user", "hi"),
            ("assistant", "hello"),
        ]
        assert (await client.history("proj", "ep-1", sid)).turns == resumed.turns
        for project, scope in (("other", "ep-1"), ("proj", "ep-2")):
            err = await raised(lambda c: c.history(project, scope, sid), client)  # noqa: B023
            assert isinstance(err, NotFound) and err.code == SESSION_NOT_FOUND
