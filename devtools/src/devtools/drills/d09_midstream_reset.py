"""d09: streams reset by the provider after k chunks end typed, never hang, are billed once.

Load: N streamed chat requests (short 20, full 1000), 8 at a time, to
``drill-break``, whose provider drops the connection after ``BREAK_AFTER`` SSE
events, before any usage chunk. Each stream must end with an ``error`` event
(OpenAI's error object) and no ``[DONE]`` within its deadline, and billing must
hold exactly one ledger entry per request, with completion tokens > 0 (billed
for what was delivered: ``router.delivered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import orjson

from devtools.drills.base import DrillResult
from devtools.drills.kit import BREAK_AFTER, DrillStack, drill_stack, ledger_rows

NAME = "d09 mid-stream resets"
_DEADLINE_S = 20.0
_LEDGER_WAIT_S = 30.0


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    if kit is not None:
        return asyncio.run(_drill(kit, 1000 if full else 20))
    with drill_stack() as own:
        return asyncio.run(_drill(own, 1000 if full else 20))


async def _one(http: httpx.AsyncClient, marker: str, index: int) -> tuple[str, str]:
    """(request id, verdict): "ok" for a typed error ending without [DONE], else what it was."""
    body = {
        "model": "drill-break",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"{marker} stream {index} tell me a story"}],
    }
    try:
        async with asyncio.timeout(_DEADLINE_S):
            async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                request_id = resp.headers.get("x-request-id", "")
                if resp.status_code != 200:
                    return request_id, f"status {resp.status_code}"
                data = [line[6:] async for line in resp.aiter_lines() if line.startswith("data: ")]
    except TimeoutError:
        return "", "hang"
    if "[DONE]" in data:
        return request_id, "[DONE] after a reset"
    if not data:
        return request_id, "no events"
    last = orjson.loads(data[-1])
    if not isinstance(last.get("error"), dict) or "message" not in last["error"]:
        return request_id, f"last event not an error: {data[-1][:80]}"
    return request_id, "ok"


async def _drill(kit: DrillStack, n: int) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    queue = list(range(n))
    results: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=kit.base_url, headers=kit.headers, timeout=30) as http:

        async def worker() -> None:
            while queue:
                results.append(await _one(http, marker, queue.pop()))

        await asyncio.gather(*(worker() for _ in range(8)))
    typed = sum(1 for _, verdict in results if verdict == "ok")
    hangs = sum(1 for _, verdict in results if verdict == "hang")
    ids = [rid for rid, _ in results if rid]
    deadline = time.monotonic() + _LEDGER_WAIT_S
    rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    while len(rows) < len(ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    with contextlib.suppress(Exception):
        await asyncio.sleep(0.5)  # a duplicate would land right behind the first entry
        rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    per_request: dict[str, int] = {}
    for row in rows:
        per_request[row.request_id] = per_request.get(row.request_id, 0) + 1
    once = sum(1 for rid in set(ids) if per_request.get(rid) == 1)
    charged = sum(1 for row in rows if row.completion_tokens > 0)
    passed = typed == n and hangs == 0 and once == n and len(rows) == n and charged == n
    bad = sorted({verdict for _, verdict in results if verdict != "ok"})
    return DrillResult(
        name=NAME,
        load=f"{n} streams, 8 concurrent",
        faults=f"provider reset after {BREAK_AFTER} SSE events, 100%",
        figure=(
            f"typed error, no [DONE]: {typed}/{n}; hangs: {hangs}; billed once: {once}/{n}; "
            f"billed for delivered tokens: {charged}/{len(rows)}"
        ),
        passed=passed,
        detail="; ".join(bad),
    )
