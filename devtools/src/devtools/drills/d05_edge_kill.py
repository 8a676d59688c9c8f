"""d05: the edge SIGKILLed with N open streams: each billed once, leases reaped in time, calls cancelled.

Setup: a project of its own (admin API) with a monthly budget, so every
request is admitted under a billing lease (``billing.store.budgets``). Load: N
streamed chat requests (short 30, full 300) to ``drill-slow``, whose fake
provider echoes the 120-word prompt at one SSE event per ``SLOW_CHUNK_MS``.
Once every stream has received some generated text, the edge is SIGKILLed (it never
settles nor releases anything), then restarted. Afterwards:

* every lease of the project is closed (billing's ``budget_leases``) within
  ``LEASE_TTL_S + LEASE_SETTLE_S + 2 * REAPER_INTERVAL_S`` of the kill: the
  reaper's period for a lease whose edge vanished;
* every killed stream is billed exactly once (one ledger entry per request
  id, none for an id the clients did not get): the router bills a cancelled
  stream for the chunks it wrote to the gRPC stream (``router.delivered``),
  and what the ledger billed the project equals what its leases consumed
  (each amount moved from the lease's hold to spend once, never charged twice);
* every provider call was cancelled: the fake provider recorded each of the
  N streams as ``disconnected`` (the client went away), none ``completed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from devtools.drills.base import DrillResult
from devtools.drills.kit import (
    LEASE_SETTLE_S,
    LEASE_TTL_S,
    REAPER_INTERVAL_S,
    DrillStack,
    drill_stack,
)
from gateway_common.db import sync_url
from gateway_common.tokens import estimate

NAME = "d05 edge SIGKILL, open streams"
_OPEN_WAIT_S = 60.0
_SETTLE_WAIT_S = 30.0
_WORDS = " ".join(["word"] * 120)


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    if kit is not None:
        return asyncio.run(_drill(kit, 300 if full else 30))
    with drill_stack() as own:
        return asyncio.run(_drill(own, 300 if full else 30))


async def _drill(kit: DrillStack, n: int) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    bound_s = LEASE_TTL_S + LEASE_SETTLE_S + 2 * REAPER_INTERVAL_S
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=kit.base_url, timeout=30, limits=limits) as http:
        project_id, headers = await _project(http, kit, marker)
        request_ids: list[str] = []
        # completion tokens each stream received (its request id's), estimated as the router does
        received: dict[str, int] = {}
        refused: list[str] = []
        first_chunks = 0
        all_open = asyncio.Event()

        async def stream(index: int) -> None:
            nonlocal first_chunks
            body = {
                "model": "drill-slow",
                "stream": True,
                "stream_options": {"include_usage": True},
                # the fake echoes the prompt, one word per event: a stream of ~2 minutes
                "messages": [{"role": "user", "content": f"{marker} stream {index} {_WORDS}"}],
            }
            async with http.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as resp:
                request_id = resp.headers.get("x-request-id", "")
                request_ids.append(request_id)
                if resp.status_code != 200:
                    refused.append(f"status {resp.status_code}: {(await resp.aread())[:80]!r}")
                    return
                received[request_id] = 0
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    got = sum(estimate(text) for text in _texts(line[6:]))
                    if got and not received[request_id]:
                        first_chunks += 1  # open: some generated text has reached the client
                        if first_chunks == n:
                            all_open.set()
                    received[request_id] += got

        tasks = [asyncio.create_task(stream(i)) for i in range(n)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), _OPEN_WAIT_S)
        opened = first_chunks
        killed_at = time.monotonic()
        await asyncio.to_thread(kit.stack.kill, "edge")
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        cut = sum(1 for outcome in outcomes if isinstance(outcome, httpx.TransportError))
        kit.stack.restart("edge")
        try:
            reaped_s, open_leases = await _leases_closed(kit, project_id, killed_at, bound_s)
            cancelled, completed, seen = await _provider_view(kit, marker, n)
            await _ready(http)
        finally:
            if kit.stack.children["edge"].returncode is not None:
                kit.stack.restart("edge")
    ids = [rid for rid in request_ids if rid]
    per_request, billed, consumed, tokens = await asyncio.to_thread(_ledger, kit, project_id)
    twice = sum(1 for count in per_request.values() if count > 1)
    billed_streams = sum(1 for rid in ids if per_request.get(rid) == 1)
    # billed below what its client received: a delivered token gone unbilled
    under = sum(1 for rid, got in received.items() if tokens.get(rid, 0) < got)
    unknown = len(set(per_request) - set(ids))  # billed, but not a request the client sent
    passed = (
        opened == n
        and cut == n
        and open_leases == 0
        and reaped_s <= bound_s
        and twice == 0
        and unknown == 0
        and billed_streams == n
        and under == 0
        and billed == consumed
        and cancelled == n
        and completed == 0
    )
    return DrillResult(
        name=NAME,
        load=f"{n} slow streams open at the kill (text received: {opened})",
        faults="edge SIGKILL x1, restarted",
        figure=(
            f"killed streams billed once: {billed_streams}/{n}, billed twice {twice}, "
            f"unknown ids {unknown}; completion tokens billed {sum(tokens.values())} >= "
            f"received by the clients {sum(received.values())} (streams billed below: {under}); "
            f"provider calls cancelled: {cancelled}/{n} (completed {completed}, seen {seen}); "
            f"reservations settled: leases closed {reaped_s:.1f} s after the kill "
            f"(bound {bound_s:.0f} s), still open {open_leases}, ledger {billed.normalize()} "
            f"= leases consumed {consumed.normalize()}: {billed == consumed}"
        ),
        passed=passed,
        detail="; ".join(
            ([f"{n - cut} client streams did not end with a transport error"] if cut < n else [])
            + sorted(set(refused))[:3]
        ),
    )


async def _project(
    http: httpx.AsyncClient, kit: DrillStack, marker: str
) -> tuple[str, dict[str, str]]:
    """A new project with a budget, and the headers of its chat key."""
    assert kit.stack.config.admin_token is not None
    operator = {"Authorization": f"Bearer {kit.stack.config.admin_token}"}
    resp = await http.post("/admin/projects", json={"name": f"d05-{marker}"}, headers=operator)
    resp.raise_for_status()
    project_id = resp.json()["id"]
    resp = await http.post(
        f"/admin/projects/{project_id}/keys",
        json={"name": "d05", "scopes": ["chat", "admin"]},
        headers=operator,
    )
    resp.raise_for_status()
    headers = {"Authorization": f"Bearer {resp.json()['key']}"}
    deadline = time.monotonic() + _SETTLE_WAIT_S
    while True:  # billing may still be starting (a 503 until it answers)
        resp = await http.put(
            f"/admin/projects/{project_id}/budget", json={"limit": "1000.00"}, headers=headers
        )
        if resp.status_code != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if resp.status_code != 200:
        raise RuntimeError(f"d05: setting the budget: {resp.status_code} {resp.text[:200]}")
    return project_id, headers


async def _leases_closed(
    kit: DrillStack, project_id: str, killed_at: float, bound_s: float
) -> tuple[float, int]:
    """(seconds from the kill until no lease of the project is open, leases still open)."""
    deadline = killed_at + bound_s + _SETTLE_WAIT_S
    while True:
        still_open = await asyncio.to_thread(_open_leases, kit, project_id)
        now = time.monotonic()
        if still_open == 0 or now > deadline:
            return now - killed_at, still_open
        await asyncio.sleep(0.2)


async def _provider_view(kit: DrillStack, marker: str, n: int) -> tuple[int, int, int]:
    """(calls the fake saw cancelled, completed, seen) among this run's, once all n ended."""
    deadline = time.monotonic() + _SETTLE_WAIT_S
    async with httpx.AsyncClient(base_url=kit.stack.fake_provider_url, timeout=10) as fake:
        while True:
            resp = await fake.get("/_fake/requests")
            entries = [
                e for e in resp.json()["requests"] if marker in orjson.dumps(e.get("body")).decode()
            ]
            cancelled = sum(1 for e in entries if e.get("disconnected"))
            completed = sum(1 for e in entries if e.get("completed"))
            if cancelled + completed >= n or time.monotonic() > deadline:
                return cancelled, completed, len(entries)
            await asyncio.sleep(0.2)


async def _ready(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + _SETTLE_WAIT_S
    while time.monotonic() < deadline:
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


def _texts(data: str) -> list[str]:
    """The content of a chat chunk's choices (the fake's streams carry nothing else)."""
    chunk = orjson.loads(data)
    deltas = [choice.get("delta") or {} for choice in chunk.get("choices") or ()]
    return [delta["content"] for delta in deltas if isinstance(delta.get("content"), str)]


def _engine(kit: DrillStack) -> sa.Engine:
    return sa.create_engine(sync_url(kit.stack.database_url("billing")))


def _open_leases(kit: DrillStack, project_id: str) -> int:
    engine = _engine(kit)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM budget_leases "
                        "WHERE project_id = :p AND closed_at IS NULL"
                    ),
                    {"p": project_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _ledger(
    kit: DrillStack, project_id: str
) -> tuple[dict[str, int], Decimal, Decimal, dict[str, int]]:
    """(ledger entries per request id, the project's ledger total, its leases' consumed,
    completion tokens billed per request id)."""
    engine = _engine(kit)
    try:
        with engine.connect() as conn:
            rows: list[Any] = list(
                conn.execute(
                    sa.text(
                        "SELECT request_id, total_amount, completion_tokens FROM ledger_entries "
                        "WHERE project_id = :p"
                    ),
                    {"p": project_id},
                ).all()
            )
            consumed = conn.execute(
                sa.text("SELECT consumed FROM budget_leases WHERE project_id = :p"),
                {"p": project_id},
            ).all()
    finally:
        engine.dispose()
    per_request: dict[str, int] = {}
    for row in rows:
        per_request[row.request_id] = per_request.get(row.request_id, 0) + 1
    billed = sum((Decimal(str(row.total_amount)) for row in rows), Decimal(0))
    held = sum((Decimal(str(row.consumed)) for row in consumed), Decimal(0))
    tokens: dict[str, int] = {}
    for row in rows:
        tokens[row.request_id] = tokens.get(row.request_id, 0) + int(row.completion_tokens)
    return per_request, billed, held, tokens
