"""Channels (seed 003) over the real stack: the key lifecycle, chat and history with site-chosen
sessions, TTL expiry, streaming, seed 003's error table (credits under a concurrent burst),
CORS, isolation between channels, and the ledger entry of each call.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from devtools.stack import Stack
from tests.integration.helpers import fake_requests, ledger_entry, poll, sse_data

pytestmark = pytest.mark.timeout(120)

ORIGIN = "https://shop.example.com"


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


class Channel:
    """A channel project made through the admin API, with its key."""

    def __init__(self, http: httpx.Client, stack: Stack, **settings: Any) -> None:
        self.http, self.stack = http, stack
        resp = http.post(
            "/admin/projects",
            json={
                "name": f"ch-{secrets.token_hex(4)}",
                "type": "channel",
                "settings": {"model": "mock-chat", **settings},
            },
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        self.id: str = resp.json()["id"]
        self.key = self.rotate()

    def rotate(self) -> str:
        resp = self.http.post(
            f"/admin/projects/{self.id}/channel-key", headers=_operator(self.stack)
        )
        assert resp.status_code == 200, resp.text
        key: str = resp.json()["key"]
        return key

    def patch(self, **settings: Any) -> None:
        resp = self.http.patch(
            f"/admin/projects/{self.id}",
            json={"settings": {"model": "mock-chat", **settings}},
            headers=_operator(self.stack),
        )
        assert resp.status_code == 200, resp.text

    def chat(self, message: str, session_id: str = "s1", **kw: Any) -> httpx.Response:
        return self.http.post(
            "/channel/v1/chat",
            json={"message": message, "session_id": session_id, **kw},
            headers={"x-channel-key": self.key},
        )

    def history(self, session_id: str) -> list[dict[str, Any]]:
        resp = self.http.get(
            "/channel/v1/history",
            params={"session_id": session_id},
            headers={"x-channel-key": self.key},
        )
        assert resp.status_code == 200, resp.text
        messages: list[dict[str, Any]] = resp.json()["messages"]
        return messages

    def topup(self, amount: str) -> None:
        resp = self.http.post(
            f"/admin/projects/{self.id}/credits/topups",
            json={"topup_id": secrets.token_hex(6), "amount": amount},
            headers=_operator(self.stack),
        )
        assert resp.status_code == 200, resp.text


def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


def test_key_chat_history_context_and_ledger(stack: Stack, http: httpx.Client) -> None:
    channel = Channel(http, stack, system_prompt="You sell shoes.")
    got = http.get(f"/admin/projects/{channel.id}/channel-key", headers=_operator(stack))
    assert got.status_code == 200 and got.json()["key"] == channel.key
    assert channel.key.startswith("sych_")

    marker = secrets.token_hex(6)
    context = {"page_url": "https://shop.example.com/p/1", "page_title": "Boots", "sku": "B1"}
    resp = channel.chat(f"hello {marker}", session_id="visitor-1", context=context)
    assert resp.status_code == 200, resp.text
    first = resp.json()
    assert first["session_id"] == "visitor-1" and first["reply"]
    sent = fake_requests(stack.fake_provider_url, marker)[0]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "You sell shoes."}
    assert sent[1]["role"] == "system" and '"page_title":"Boots"' in sent[1]["content"]
    assert sent[-1] == {"role": "user", "content": f"hello {marker}"}

    # Bearer works too; the same session continues with the first turns replayed.
    marker2 = secrets.token_hex(6)
    resp = http.post(
        "/channel/v1/chat",
        json={"message": f"again {marker2}", "session_id": "visitor-1"},
        headers={"authorization": f"Bearer {channel.key}"},
    )
    assert resp.status_code == 200, resp.text
    sent = fake_requests(stack.fake_provider_url, marker2)[0]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    history = channel.history("visitor-1")
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"] == f"hello {marker}" and history[1]["content"] == first["reply"]
    assert channel.history("never-used") == []

    request_id = resp.headers["x-request-id"]
    entry, items = poll(lambda: ledger_entry(stack.database_url("billing"), request_id))
    assert entry.project_id == channel.id and items

    models = http.get("/channel/v1/models", headers={"x-channel-key": channel.key})
    assert models.status_code == 200
    row = next(r for r in models.json()["data"] if r["model_id"] == "mock-chat")
    assert row["current"] is True and (row["context"], row["max_output"]) == (128000, 16384)
    assert (row["speed"], row["speed_tps"]) == ("~250 TPS", 250)  # seed 003's "~180 TPS" form
    assert row["best_for"] == "General purpose, fast replies"  # the catalog's best_for
    unstated = next(r for r in models.json()["data"] if r["model_id"] == "mock-history-window")
    assert (unstated["speed"], unstated["best_for"]) == (None, None)
    embed = [r for r in models.json()["data"] if r["model_id"] == "mock-embed"]
    assert embed == []  # chat models only


def test_error_table(stack: Stack, http: httpx.Client) -> None:
    channel = Channel(http, stack, rate_limits={"per_day": 2})
    assert "key" in _error(http.post("/channel/v1/chat", json={}), 401).lower()
    bad = {"x-channel-key": "sych_" + "x" * 43}
    _error(
        http.post("/channel/v1/chat", json={"message": "a", "session_id": "s"}, headers=bad), 401
    )
    _error(http.get("/channel/v1/history?session_id=s", headers={"x-channel-key": "junk"}), 401)
    assert "message" in _error(channel.chat("x" * 2001), 400)
    assert "session_id" in _error(channel.chat("hi", session_id="s" * 256), 400)
    big = http.post(
        "/channel/v1/chat",
        content=b'{"message": "' + b"a" * 5_000_000 + b'"}',
        headers={"x-channel-key": channel.key, "content-type": "application/json"},
    )
    _error(big, 413)
    # Daily quota: two calls admitted, the third refused with Retry-After.
    assert channel.chat("one").status_code == 200
    assert channel.chat("two").status_code == 200
    third = channel.chat("three")
    _error(third, 429)
    assert int(third.headers["retry-after"]) > 0
    # Disabled: 403 at once (the admin write refreshes this edge).
    channel.patch(enabled=False)
    assert "disabled" in _error(channel.chat("four"), 403).lower()
    # A provider failure: 500 naming no provider.
    broken = Channel(http, stack)
    broken.patch(model="fo-api-down")
    text = _error(broken.chat("hi"), 500)
    assert "fo-" not in text and "503" not in text


def test_per_minute_quota_and_rotation(stack: Stack, http: httpx.Client) -> None:
    channel = Channel(http, stack, rate_limits={"per_minute": 1})
    old = channel.key
    assert channel.chat("one").status_code == 200
    limited = channel.chat("two")
    _error(limited, 429)
    assert "retry-after" in limited.headers
    channel.key = channel.rotate()
    assert channel.key != old
    resp = http.get("/channel/v1/history?session_id=s1", headers={"x-channel-key": old})
    _error(resp, 401)
    assert [m["role"] for m in channel.history("s1")] == ["user", "assistant"]


def test_ttl_expiry_starts_a_new_thread(stack: Stack, http: httpx.Client) -> None:
    channel = Channel(http, stack, history_ttl_seconds=1)
    assert channel.chat("remember me", session_id="t").status_code == 200
    assert len(channel.history("t")) == 2
    poll(lambda: channel.history("t") == [] or None, timeout=10)
    marker = secrets.token_hex(6)
    assert channel.chat(f"fresh {marker}", session_id="t").status_code == 200
    sent = fake_requests(stack.fake_provider_url, marker)[0]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user"]
    assert next(m["content"] for m in channel.history("t")) == f"fresh {marker}"


def test_streaming(stack: Stack, http: httpx.Client) -> None:
    channel = Channel(http, stack)
    with http.stream(
        "POST",
        "/channel/v1/chat",
        json={"message": "stream please", "session_id": "st", "stream": True},
        headers={"x-channel-key": channel.key},
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = sse_data(resp.iter_lines())
    events = [orjson.loads(f) for f in frames]
    assert events[-1]["done"] is True and events[-1]["session_id"] == "st"
    assert "".join(e.get("delta", "") for e in events[:-1]) == events[-1]["reply"]
    assert channel.history("st")[1]["content"] == events[-1]["reply"]


def test_cors_and_isolation(stack: Stack, http: httpx.Client) -> None:
    a = Channel(http, stack, allowed_origins=[ORIGIN])
    b = Channel(http, stack)
    pre = {"origin": ORIGIN, "access-control-request-method": "POST"}
    ok = http.options("/channel/v1/chat", headers=pre)
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-channel-key" in ok.headers["access-control-allow-headers"].lower()
    evil = http.options("/channel/v1/chat", headers={**pre, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    resp = http.post(
        "/channel/v1/chat",
        json={"message": "secret of a", "session_id": "shared"},
        headers={"x-channel-key": a.key, "origin": ORIGIN},
    )
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == ORIGIN
    other = http.post(
        "/channel/v1/chat",
        json={"message": "hi b", "session_id": "shared"},
        headers={"x-channel-key": b.key, "origin": ORIGIN},
    )
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert next(m["content"] for m in b.history("shared")) == "hi b"
    assert "secret of a" not in str(b.history("shared"))


#: budget-slow's catalog prices and output cap: a channel call sets no ``max_tokens``, so
#: its worst case is its prompt plus 16384 output tokens.
_IN, _OUT, _MAX_OUT = Decimal("0.00000015"), Decimal("0.0000006"), 16384
#: The output part of one call's worst case (0.0098304); credits of 20.3 of them afford
#: exactly 20 calls for any prompt under about 980 bytes (a channel's is about 150).
_AFFORDABLE, _CREDITS = 20, Decimal("0.2")


def test_credits_burst_admits_exactly_the_affordable_calls(
    stack: Stack, http: httpx.Client, base_url: str
) -> None:
    """200 concurrent calls on budget-slow (answers 4 s late, so every call is decided while
    the admitted ones still hold their worst-case reservations): exactly the affordable
    number succeed, the rest are 403, the balance never goes below 0, and the usage report
    by day counts the admitted calls at their billed cost.

    Every call has the same worst case (fixed-width message and session id): the edge
    leases credits from billing in slices of whole worst cases (``budget_lease_multiple``),
    so with equal calls no slice strands a part of a call's cost and the count is exact;
    calls of a few bytes' different size can strand one call's worth per slice."""
    channel = Channel(http, stack, model="budget-slow")
    channel.topup(str(_CREDITS))
    worst_output = _OUT * _MAX_OUT
    assert int(_CREDITS // (worst_output + _IN * 980)) == _AFFORDABLE
    assert int(_CREDITS // worst_output) == _AFFORDABLE

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

            async def one(i: int) -> int:
                resp = await client.post(
                    "/channel/v1/chat",
                    json={"message": f"burst {i:03d}", "session_id": f"b{i:03d}"},
                    headers={"x-channel-key": channel.key},
                )
                return resp.status_code

            return list(await asyncio.gather(*(one(i) for i in range(200))))

    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 403}, statuses
    assert statuses.count(200) == _AFFORDABLE, statuses

    def settled() -> Decimal | None:
        credits = http.get(f"/admin/projects/{channel.id}/credits", headers=_operator(stack))
        state = credits.json()["credits"]
        if not state or Decimal(str(state["held"])) != 0:
            return None
        return Decimal(state["balance"])

    # The edge's lease is released when it expires (billing's lease TTL, 30 s) at its
    # sweeper's next pass (5 s): up to 35 s after the burst began, more on a loaded machine.
    balance = poll(settled, timeout=60)
    assert balance >= 0, balance

    def report() -> dict[str, Any] | None:
        resp = http.get(
            f"/admin/projects/{channel.id}/usage",
            params={"group_by": "day"},
            headers=_operator(stack),
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        rows = body["rows"]
        return body if rows and sum(r["requests"] for r in rows) == _AFFORDABLE else None

    usage = poll(report, timeout=30)
    (today,) = usage["rows"]
    assert today["group"] == datetime.now(UTC).date().isoformat()
    assert Decimal(str(usage["total"])) == _CREDITS - balance
    assert 0 < Decimal(str(today["amount"])) <= _CREDITS
