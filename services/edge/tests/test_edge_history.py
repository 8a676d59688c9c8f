"""``edge.pipeline.history``: session ids, fitting history into a context window, the meta,
and the recorder that stores a call's turns before its answer goes out.

The recorder and ``open_session`` talk to scripted replies on a private nats-server (the
client's half of the wire contract); the whole flow over the real sessions service is
tests/integration/test_sessions.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from nats.aio.client import Client

from edge.pipeline import history
from edge.sessions_client import SessionsClient
from gateway_common import subjects
from gateway_common.errors import InvalidRequest, NotFound, ProviderError, ServiceUnavailable
from gateway_common.sessions_history import (
    MAX_TTL_SECONDS,
    AppendReply,
    AppendTurns,
    HistoryReply,
    OpenHistory,
    StoredTurn,
)
from gateway_common.tokens import chat_prompt_tokens

from .scripted_nats import script

pytestmark = pytest.mark.timeout(60)

SID = str(uuid.uuid4())


def _turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


def _tokens(messages: list[Any]) -> int:
    return chat_prompt_tokens({"messages": messages}, history.byte_bound)


# -- pure parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "s", "not-a-uuid", "0b0f" * 9, "g" * 32])
def test_a_session_id_must_be_a_uuid(bad: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        history.session_uuid(bad)
    assert info.value.code == "invalid_session_id" and info.value.param == "session_id"


def test_a_uuid_is_canonicalized() -> None:
    assert history.session_uuid(SID.upper()) == SID
    assert history.session_uuid(SID.replace("-", "")) == SID


def test_byte_bound_counts_utf8_bytes() -> None:
    assert history.byte_bound("abc") == 3
    assert history.byte_bound("жж") == 4
    assert history.byte_bound("中") == 3


def test_everything_fits_in_a_large_or_unknown_window() -> None:
    turns = [_turn("user", "a"), _turn("assistant", "b")]
    assert history.fit(turns, [_turn("user", "c")], window=10_000, reserve=100) == (turns, 0)
    assert history.fit(turns, [_turn("user", "c")], window=0, reserve=0) == (turns, 0)
    assert history.fit([], [_turn("user", "c")], window=1, reserve=0) == ([], 0)


def test_the_oldest_turns_go_until_the_rest_fits() -> None:
    turns = [_turn("user" if i % 2 == 0 else "assistant", f"{i} " + "x" * 95) for i in range(10)]
    fixed = [_turn("system", "sys"), _turn("user", "now")]
    window, reserve = 700, 100
    kept, dropped = history.fit(turns, fixed, window=window, reserve=reserve)
    assert kept == turns[dropped:] and 0 < dropped < len(turns)
    assert _tokens([*fixed, *kept]) <= window - reserve
    # One more turn would not have fit (the cut is as small as it can be, in whole exchanges).
    assert _tokens([*fixed, *turns[dropped - 2 :]]) > window - reserve
    assert kept[0]["role"] == "user"


def test_a_cut_never_leaves_history_starting_with_a_reply() -> None:
    turns = [_turn("user", "q" * 50), _turn("assistant", "a" * 10), _turn("user", "r")]
    fixed = [_turn("user", "now")]
    room = _tokens([*fixed, *turns[1:]])
    kept, dropped = history.fit(turns, fixed, window=room, reserve=0)
    assert kept == turns[2:] and dropped == 2


def test_messages_that_do_not_fit_alone_drop_all_history() -> None:
    turns = [_turn("user", "a"), _turn("assistant", "b")]
    kept, dropped = history.fit(turns, [_turn("user", "x" * 1000)], window=100, reserve=10)
    assert kept == [] and dropped == 2


def test_max_turns_bounds_the_count() -> None:
    turns = [_turn("user" if i % 2 == 0 else "assistant", str(i)) for i in range(6)]
    kept, dropped = history.fit(turns, [], window=0, reserve=0, max_turns=2)
    assert kept == turns[4:] and dropped == 4


def test_reply_room_is_the_cap_else_the_model_maximum_at_most_half() -> None:
    assert history.reply_room(1000, 50, 300) == 50
    assert history.reply_room(1000, None, 300) == 300
    assert history.reply_room(1000, None, 1000) == 500
    assert history.reply_room(0, None, 0) == 0


def test_prepend_and_meta() -> None:
    session = history.Session(
        session_id=SID, history=[_turn("user", "old"), _turn("assistant", "reply")]
    )
    sent = session.prepend(
        [_turn("user", "new")], system_prompt="sys", window=10_000, reserve=0, max_messages=3
    )
    assert sent == [_turn("user", "new")]  # system + new leave room for 1 turn: a reply, cut
    assert session.meta() == {
        "session_id": SID,
        "session_created": False,
        "session_expired": False,
        "history_truncated": True,
        "turns_dropped": 2,
    }


def test_own_turns_leave_out_instructions() -> None:
    turns = history.own_turns(
        [_turn("system", "s"), _turn("developer", "d"), _turn("user", "u"), _turn("tool", "t")]
    )
    assert [t.role for t in turns] == ["user", "tool"]


def test_ttl_is_clamped_to_what_sessions_accepts() -> None:
    assert history.session_ttl(0) == 1
    assert history.session_ttl(2) == 2
    assert history.session_ttl(MAX_TTL_SECONDS * 2) == MAX_TTL_SECONDS


# -- over NATS (scripted sessions) ----------------------------------------------------------------


async def test_sessions_off_refuses_an_id_and_asks_nothing(nc: Client) -> None:
    seen: list[bytes] = []
    await script(nc, subjects.HISTORY_OPEN, b"{}", seen)
    client = SessionsClient(nc, timeout_s=0.5)
    kw: dict[str, Any] = {"project_id": "p", "scope": "ep", "enabled": False, "ttl_seconds": 60}
    assert await history.open_session(client, session_id=None, **kw) is None
    with pytest.raises(InvalidRequest) as info:
        await history.open_session(client, session_id=SID, **kw)
    assert info.value.code == "sessions_disabled"
    with pytest.raises(InvalidRequest):  # malformed: refused before any round trip
        await history.open_session(client, session_id="nope", **{**kw, "enabled": True})
    assert seen == []


async def test_open_maps_turns_and_an_expired_session(nc: Client) -> None:
    seen: list[bytes] = []
    new = str(uuid.uuid4())
    reply = HistoryReply(
        status="expired",
        session_id=new,
        created=True,
        turns=[StoredTurn(role="user", content="hi", seq=0, created_at=1)],
    )
    await script(nc, subjects.HISTORY_OPEN, reply.to_bytes(), seen)
    session = await history.open_session(
        SessionsClient(nc, timeout_s=0.5),
        project_id="p",
        scope="ep",
        enabled=True,
        ttl_seconds=MAX_TTL_SECONDS * 10,
        session_id=SID.upper(),
    )
    assert session is not None
    assert session.session_id == new and session.expired and session.created
    assert session.history == [_turn("user", "hi")]
    asked = OpenHistory.model_validate_json(seen[0])
    assert asked.session_id == SID and asked.scope == "ep" and asked.ttl_seconds == MAX_TTL_SECONDS


async def test_open_of_an_unknown_session_is_404(nc: Client) -> None:
    await script(nc, subjects.HISTORY_OPEN, HistoryReply(status="not_found").to_bytes(), [])
    with pytest.raises(NotFound) as info:
        await history.open_session(
            SessionsClient(nc, timeout_s=0.5),
            project_id="p",
            scope="ep",
            enabled=True,
            ttl_seconds=60,
            session_id=SID,
        )
    assert info.value.code == "session_not_found"


def _recorder(nc: Client) -> history.SessionRecorder:
    return history.SessionRecorder(
        SessionsClient(nc, timeout_s=0.5),
        history.Session(session_id=SID),
        project_id="p",
        scope="ep",
        request_id="req-1",
        turns=history.own_turns([_turn("system", "s"), _turn("user", "question")]),
        ttl_seconds=60,
    )


async def test_a_unary_answer_is_stored_before_it_is_returned(nc: Client) -> None:
    seen: list[bytes] = []
    await script(nc, subjects.HISTORY_APPEND, AppendReply(status="ok").to_bytes(), seen)
    body = orjson.dumps({"choices": [{"index": 0, "message": {"content": "answer"}}]})
    assert await _recorder(nc).body(body) == body
    stored = AppendTurns.model_validate_json(seen[0])
    assert stored.request_id == "req-1" and stored.ttl_seconds == 60
    assert [(t.role, t.content) for t in stored.turns] == [
        ("user", "question"),
        ("assistant", "answer"),
    ]


async def test_a_stream_is_assembled_and_stored_before_done(nc: Client) -> None:
    seen: list[bytes] = []
    await script(nc, subjects.HISTORY_APPEND, AppendReply(status="ok").to_bytes(), seen)
    recorder = _recorder(nc)
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 1, "delta": {"content": "other choice"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 1}},
    ]
    for chunk in chunks:
        raw = orjson.dumps(chunk)
        assert await recorder.frame(raw) == b"data: " + raw + b"\n\n"
    assert seen == []  # nothing stored until the stream is over
    assert await recorder.finish() == b"data: [DONE]\n\n"
    stored = AppendTurns.model_validate_json(seen[0])
    assert stored.turns[-1].content == "Hello"


async def test_a_failed_store_is_the_calls_error(nc: Client) -> None:
    await script(nc, subjects.HISTORY_APPEND, None, [])  # never answers
    with pytest.raises(ServiceUnavailable):
        await _recorder(nc).finish()


async def test_an_unreadable_answer_is_502_and_stores_nothing(nc: Client) -> None:
    seen: list[bytes] = []
    await script(nc, subjects.HISTORY_APPEND, AppendReply(status="ok").to_bytes(), seen)
    with pytest.raises(ProviderError) as info:
        await _recorder(nc).body(b"not json")
    assert info.value.http_status == 502 and seen == []
