"""Seed 001's Gateway API sessions over the real stack (sessions service on SQLite and
PostgreSQL): a call without ``session_id`` starts one, a call with it gets the history
prepended after the system prompt, every turn is stored before its answer arrives (50 quick
turns, unary and streamed), sessions expire after the endpoint's ``session_ttl_seconds`` and
start afresh, foreign and malformed ids are refused, and history is cut to the model's
context window with ``meta`` saying so.

What reached the model is read from the fake provider's request log (``fake_requests``),
each session marked by a fresh token in its texts.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import orjson
import pytest

from devtools.stack import Stack
from gateway_common import subjects
from gateway_common.sessions_history import HistoryKey, HistoryReply
from tests.integration.helpers import fake_requests, poll, sse_data
from tests.integration.test_gateway_api import Tenant

pytestmark = pytest.mark.timeout(180)

SYSTEM = "You are a careful assistant."
SESSION_META = {
    "session_id",
    "session_created",
    "session_expired",
    "history_truncated",
    "turns_dropped",
}


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is True
    meta = body["meta"]
    assert set(meta) >= SESSION_META, meta
    assert resp.headers["x-switchyard-session-id"] == meta["session_id"]
    assert str(uuid.UUID(meta["session_id"])) == meta["session_id"]
    return dict(body)


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["ok"] is False and body["code"] == code and body["error"], body
    assert set(body) <= {"ok", "error", "code"}, body
    return dict(body)


def _sent(stack: Stack, marker: str) -> list[list[dict[str, Any]]]:
    """The ``messages`` of every chat request carrying ``marker`` that reached the provider."""
    return [
        r["body"]["messages"]
        for r in fake_requests(stack.fake_provider_url, marker)
        if r["path"] == "/v1/chat/completions"
    ]


def _history_status(stack: Stack, project_id: str, scope: str, session_id: str) -> str:
    """Sessions' own answer for a session (``sessions.history.get.v1``: reads, never extends)."""

    async def ask() -> str:
        nc = await nats.connect(stack.nats_url)
        try:
            key = HistoryKey(project_id=project_id, scope=scope, session_id=session_id)
            msg = await nc.request(subjects.HISTORY_GET, key.to_bytes(), timeout=5)
            return HistoryReply.model_validate_json(msg.data).status
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_a_call_starts_a_session_and_the_next_gets_its_history(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("chat", system_prompt=SYSTEM, sessions_enabled=True)
    tenant.endpoint("plain", system_prompt=SYSTEM)
    marker = secrets.token_hex(6)

    first = _ok(tenant.call("chat", {"message": f"my name is Ada {marker}"}))
    meta = first["meta"]
    assert meta["session_created"] is True and meta["session_expired"] is False
    assert meta["history_truncated"] is False and meta["turns_dropped"] == 0
    sid = meta["session_id"]

    second = _ok(tenant.call("chat", {"message": f"what is my name? {marker}", "session_id": sid}))
    assert second["meta"]["session_id"] == sid and second["meta"]["session_created"] is False
    # The dispatcher resumes the same session.
    third = tenant.dispatch("chat", {"message": f"and again {marker}", "session_id": sid})
    assert _ok(third)["meta"]["session_id"] == sid

    sent = _sent(stack, marker)
    assert len(sent) == 3
    assert sent[1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"my name is Ada {marker}"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": f"what is my name? {marker}"},
    ]
    assert sent[2][1:] == [
        *sent[1][1:],
        {"role": "assistant", "content": second["content"]},
        {"role": "user", "content": f"and again {marker}"},
    ]

    # The caller's own system message is this call's instruction, not history.
    fourth = tenant.call(
        "chat",
        {
            "messages": [
                {"role": "system", "content": f"be brief {marker}"},
                {"role": "user", "content": f"fourth {marker}"},
            ],
            "session_id": sid,
        },
    )
    _ok(fourth)
    _ok(tenant.call("chat", {"message": f"fifth {marker}", "session_id": sid}))
    fifth = _sent(stack, marker)[-1]
    assert {"role": "system", "content": f"be brief {marker}"} not in fifth
    assert {"role": "user", "content": f"fourth {marker}"} in fifth

    # Without sessions on: no session meta, and a session_id is refused before the model.
    plain = tenant.call("plain", {"message": f"no session {marker}"})
    assert plain.status_code == 200 and "session_id" not in plain.json()["meta"]
    assert "x-switchyard-session-id" not in plain.headers
    before = len(_sent(stack, marker))
    _error(
        tenant.call("plain", {"message": f"x {marker}", "session_id": sid}),
        400,
        "sessions_disabled",
    )
    assert len(_sent(stack, marker)) == before


def test_fifty_quick_turns_each_see_the_one_before(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("quick", system_prompt=SYSTEM, sessions_enabled=True)
    marker = secrets.token_hex(6)
    sid: str | None = None
    expected: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    replies: list[str] = []
    for i in range(50):
        text = f"turn {i} {marker}"
        body: dict[str, Any] = {"message": text}
        if sid is not None:
            body["session_id"] = sid
        answer = _ok(tenant.call("quick", body))
        sid = sid or answer["meta"]["session_id"]
        assert answer["meta"]["session_id"] == sid, i
        assert answer["content"].startswith(text), i  # the fake answers the last user text
        replies.append(answer["content"])
    sent = _sent(stack, marker)
    assert len(sent) == 50
    for i, messages in enumerate(sent):
        expected.append({"role": "user", "content": f"turn {i} {marker}"})
        assert messages == expected, f"turn {i} did not see every turn before it"
        expected.append({"role": "assistant", "content": replies[i]})


def test_a_streamed_turn_is_stored_before_done(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("live", system_prompt=SYSTEM, sessions_enabled=True, streaming_enabled=True)
    marker = secrets.token_hex(6)
    sid: str | None = None
    texts: list[str] = []
    for i in range(10):
        body: dict[str, Any] = {"message": f"stream {i} {marker}", "stream": True}
        if sid is not None:
            body["session_id"] = sid
        resp = tenant.call("live", body)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        sid = sid or resp.headers["x-switchyard-session-id"]
        assert resp.headers["x-switchyard-session-id"] == sid
        data = sse_data(resp.text.splitlines())
        assert data[-1] == "[DONE]"
        texts.append(
            "".join(
                c["choices"][0]["delta"].get("content") or ""
                for c in map(orjson.loads, data[:-1])
                if c.get("choices")
            )
        )
    # A unary call right after the last [DONE] sees the streamed replies, assembled.
    last = _ok(tenant.call("live", {"message": f"unary {marker}", "session_id": sid}))
    assert last["meta"]["session_id"] == sid
    sent = _sent(stack, marker)
    assert len(sent) == 11
    assert [m["content"] for m in sent[-1] if m["role"] == "assistant"] == texts
    for i, messages in enumerate(sent[:-1]):
        assert [m["content"] for m in messages if m["role"] == "assistant"] == texts[:i]


def test_a_session_expires_after_its_ttl_and_starts_afresh(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    created = tenant.endpoint("brief", sessions_enabled=True, session_ttl_seconds=2)
    marker = secrets.token_hex(6)
    old = _ok(tenant.call("brief", {"message": f"remember {marker}"}))["meta"]["session_id"]
    assert _history_status(stack, tenant.id, created["id"], old) == "ok"
    poll(
        lambda: _history_status(stack, tenant.id, created["id"], old) == "expired" or None,
        timeout=15,
    )
    answer = _ok(tenant.call("brief", {"message": f"back again {marker}", "session_id": old}))
    meta = answer["meta"]
    assert meta["session_expired"] is True and meta["session_created"] is True
    assert meta["session_id"] != old
    assert _sent(stack, marker)[-1] == [{"role": "user", "content": f"back again {marker}"}]
    # The new session carries on normally.
    again = _ok(
        tenant.call("brief", {"message": f"next {marker}", "session_id": meta["session_id"]})
    )
    assert again["meta"]["session_expired"] is False
    assert len(_sent(stack, marker)[-1]) == 3


def test_foreign_and_malformed_session_ids_are_refused_before_the_model(
    stack: Stack, http: httpx.Client
) -> None:
    a, b = Tenant(http, stack), Tenant(http, stack)
    for tenant in (a, b):
        tenant.endpoint("chat", sessions_enabled=True)
    a.endpoint("other", sessions_enabled=True)
    marker = secrets.token_hex(6)
    a_sid = _ok(a.call("chat", {"message": f"a secret {marker}"}))["meta"]["session_id"]
    b_sid = _ok(b.call("chat", {"message": f"b secret {marker}"}))["meta"]["session_id"]
    seen = len(_sent(stack, marker))

    for bad in ("s", "not-a-uuid", "123", "0b0f" * 9):
        body = _error(
            a.call("chat", {"message": f"x {marker}", "session_id": bad}), 400, "invalid_session_id"
        )
        assert "session_id" in body["error"]
    for tenant, slug, sid in (
        (a, "chat", str(uuid.uuid4())),  # never existed
        (a, "chat", b_sid),  # another project's
        (b, "chat", a_sid),  # another project's
        (a, "other", a_sid),  # the same project's other endpoint
    ):
        body = _error(
            tenant.call(slug, {"message": f"x {marker}", "session_id": sid}),
            404,
            "session_not_found",
        )
        assert "secret" not in body["error"] and sid not in body["error"]
        body = _error(
            tenant.dispatch(slug, {"message": f"x {marker}", "session_id": sid}),
            404,
            "session_not_found",
        )
    assert len(_sent(stack, marker)) == seen  # no refused call reached the model
    # Both sessions are untouched by the attempts.
    follow = _ok(a.call("chat", {"message": f"a again {marker}", "session_id": a_sid}))
    assert follow["meta"]["session_id"] == a_sid
    assert _sent(stack, marker)[-1][0]["content"] == f"a secret {marker}"


def test_history_is_cut_to_the_context_window_and_meta_says_so(
    stack: Stack, http: httpx.Client
) -> None:
    """``mock-history-window``: 1,500 tokens, 100 kept for the reply; each exchange of ~250
    characters (a user turn and the fake's echo) costs ~530 tokens by the byte bound."""
    tenant = Tenant(http, stack)
    tenant.endpoint(
        "small", model="mock-history-window", system_prompt=SYSTEM, sessions_enabled=True
    )
    marker = secrets.token_hex(6)
    sid: str | None = None
    metas: list[dict[str, Any]] = []
    for i in range(8):
        body: dict[str, Any] = {"message": f"{i} {marker} " + "words " * 40}
        if sid is not None:
            body["session_id"] = sid
        answer = _ok(tenant.call("small", body))
        sid = answer["meta"]["session_id"]
        metas.append(answer["meta"])
    sent = _sent(stack, marker)
    assert not metas[0]["history_truncated"] and not metas[1]["history_truncated"]
    assert any(m["history_truncated"] for m in metas)
    for meta, messages in zip(metas, sent, strict=True):
        size = sum(len(str(m["content"]).encode()) + 3 + len(m["role"]) for m in messages) + 3
        assert size <= 1500 - 100, (meta, size)
        history = messages[1:-1]
        assert len(history) % 2 == 0  # whole exchanges only, starting with the user
        assert all(m["role"] == "user" for m in history[::2])
        if meta["history_truncated"]:
            assert meta["turns_dropped"] > 0
    last = sent[-1]
    # The newest exchange is always kept; the oldest turns are the ones gone.
    assert last[-3]["content"].startswith(f"6 {marker}")
    assert not any(m["content"].startswith(f"0 {marker}") for m in last)
    assert metas[-1]["turns_dropped"] == 14 - (len(last) - 2)
