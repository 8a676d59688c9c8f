"""d08: failover while the primary fails every call: served by the fallback, breaker bounded.

``drill-failover`` (the kit's catalog) has a primary on the fake's switch
``FAILOVER_SWITCH`` and a healthy fallback. The drill breaks the primary
(first half of the load: every call answered 503, second half: every
connection reset) and then:

- trip: unary requests one at a time until the primary's breaker is open
  (router metric ``switchyard_router_breaker_state`` = 2); it must open after
  exactly ``FAILOVER_TRIP`` primary failures (the configured
  ``consecutive_failures``);
- outage: N unary + N streamed requests (short 100 + 100, full 1000 + 1000),
  8 at a time: >= 99.9 % complete answers from the fallback, attempts per
  request (``x-switchyard-attempts``) <= passes x deployments, one ledger entry
  each, and upstream calls during the outage <= 1.2x the requests (counted from
  the fake provider's request log, batch by batch, so its bounded log never
  overflows; the primary's calls are the breaker's half-open probes);
- recovery: the primary healed, traffic must return to it within the
  half-open period (the breaker's ``cooldown_s``, plus 1 s of slack for this
  loaded machine).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from devtools.drills.base import DrillResult
from devtools.drills.kit import (
    FAILOVER_COOLDOWN_S,
    FAILOVER_SWITCH,
    FAILOVER_TRIP,
    DrillStack,
    drill_stack,
    ledger_rows,
)

NAME = "d08 failover"
_MODEL = "drill-failover"
_PRIMARY, _FALLBACK = "drill-fo-primary", "drill-fo-fallback"
#: retry.passes (the catalog default, 2) x the model's 2 deployments.
_MAX_ATTEMPTS = 4
_CONCURRENCY = 8
_BATCH = 100
_DEADLINE_S = 20.0
_LEDGER_WAIT_S = 60.0
_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class _Answer:
    request_id: str
    verdict: str  # "ok" for a complete answer, else what it was
    deployment: str = ""
    attempts: int = 0


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    n = 1000 if full else 100
    if kit is not None:
        return asyncio.run(_drill(kit, n))
    with drill_stack() as own:
        return asyncio.run(_drill(own, n))


async def _one(http: httpx.AsyncClient, marker: str, index: int, *, stream: bool) -> _Answer:
    body: dict[str, object] = {
        "model": _MODEL,
        "messages": [{"role": "user", "content": f"{marker} {index} fail me over"}],
    }
    if stream:
        body["stream"] = True
    try:
        async with asyncio.timeout(_DEADLINE_S):
            async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                raw = await resp.aread()
    except TimeoutError:
        return _Answer("", "hang")
    except httpx.TransportError as exc:
        return _Answer("", f"transport {type(exc).__name__}")
    answer = _Answer(
        resp.headers.get("x-request-id", ""),
        "ok",
        resp.headers.get("x-switchyard-deployment", ""),
        int(resp.headers.get("x-switchyard-attempts") or 0),
    )
    if resp.status_code != 200:
        return _Answer(answer.request_id, f"status {resp.status_code}")
    if stream:
        data = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        if not data or data[-1] != "[DONE]":
            return _Answer(answer.request_id, "stream without [DONE]")
    elif orjson.loads(raw).get("object") != "chat.completion":
        return _Answer(answer.request_id, "not a chat.completion")
    return answer


class _Operator:
    """What an operator sees: the fake's switches and request log, the router's metrics."""

    def __init__(self, kit: DrillStack) -> None:
        self.fake = kit.stack.fake_provider_url
        self.metrics = f"http://127.0.0.1:{kit.stack.config.ports.router_metrics}/metrics"

    async def switch(self, http: httpx.AsyncClient, spec: str | None) -> None:
        url = f"{self.fake}/_fake/switches/{FAILOVER_SWITCH}"
        reply = await (http.delete(url) if spec is None else http.put(url, json={"spec": spec}))
        reply.raise_for_status()

    async def upstream_calls(self, http: httpx.AsyncClient, marker: str) -> tuple[int, int]:
        """(primary, all) calls the fake received carrying ``marker``."""
        log = (await http.get(f"{self.fake}/_fake/requests")).json()["requests"]
        mine = [r for r in log if marker in orjson.dumps(r["body"]).decode()]
        primary = sum(1 for r in mine if f"switch={FAILOVER_SWITCH}" in r["path"])
        return primary, len(mine)

    async def breaker_state(self, http: httpx.AsyncClient) -> float | None:
        text = (await http.get(self.metrics)).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "switchyard_router_breaker_state"
                    and sample.labels.get("deployment") == _PRIMARY
                ):
                    return float(sample.value)
        return None


async def _drill(kit: DrillStack, n: int) -> DrillResult:
    op = _Operator(kit)
    answers: list[_Answer] = []
    primary_calls = upstream_calls = 0
    async with (
        httpx.AsyncClient(base_url=kit.base_url, headers=kit.headers, timeout=30) as http,
        httpx.AsyncClient(timeout=5) as admin,
    ):
        warm = await _one(http, uuid.uuid4().hex[:8], 0, stream=False)
        try:
            # Trip: the breaker opens after the configured failures in a row.
            await op.switch(admin, "status=503")
            trip_marker = uuid.uuid4().hex[:8]
            tripped_after: int | None = None
            for i in range(FAILOVER_TRIP * 4):
                answers.append(await _one(http, trip_marker, i, stream=False))
                if await op.breaker_state(admin) == 2:
                    tripped_after = (await op.upstream_calls(admin, trip_marker))[0]
                    break
            primary, total = await op.upstream_calls(admin, trip_marker)
            primary_calls, upstream_calls = primary_calls + primary, upstream_calls + total

            # Outage: N unary + N streams, in batches; 503s, then resets.
            jobs = [(i, i % 2 == 1) for i in range(2 * n)]
            outage_started = time.monotonic()
            for start in range(0, len(jobs), _BATCH):
                if start == len(jobs) // 2 // _BATCH * _BATCH:
                    await op.switch(admin, "reset=1")
                marker = uuid.uuid4().hex[:8]
                batch = jobs[start : start + _BATCH]

                async def worker(batch: list[tuple[int, bool]] = batch, m: str = marker) -> None:
                    while batch:
                        index, stream = batch.pop()
                        answers.append(await _one(http, m, index, stream=stream))

                await asyncio.gather(*(worker() for _ in range(_CONCURRENCY)))
                primary, total = await op.upstream_calls(admin, marker)
                primary_calls, upstream_calls = primary_calls + primary, upstream_calls + total
            outage_s = time.monotonic() - outage_started
        finally:
            # Recovery: healed, the half-open probe closes the breaker.
            await op.switch(admin, None)
        healed = time.monotonic()
        returned_s: float | None = None
        recovery_marker = uuid.uuid4().hex[:8]
        for i in range(200):
            back = await _one(http, recovery_marker, i, stream=False)
            if back.deployment == _PRIMARY:
                returned_s = time.monotonic() - healed
                break
            if time.monotonic() - healed > 3 * (FAILOVER_COOLDOWN_S + _SLACK_S):
                break
            await asyncio.sleep(0.05)
        after = [await _one(http, recovery_marker, 1000 + i, stream=i % 2 == 1) for i in range(10)]
        stays = sum(1 for a in after if a.deployment == _PRIMARY and a.verdict == "ok")

    requests = len(answers)
    outage = answers[-2 * n :]
    by_fallback = sum(1 for a in outage if a.verdict == "ok" and a.deployment == _FALLBACK)
    over_attempts = sum(1 for a in answers if a.attempts > _MAX_ATTEMPTS)
    max_attempts = max((a.attempts for a in answers), default=0)
    ids = [a.request_id for a in answers if a.verdict == "ok"]
    deadline = time.monotonic() + _LEDGER_WAIT_S
    rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    while len(rows) < len(ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    await asyncio.sleep(0.5)  # a duplicate would land right behind the first entry
    rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    per_request = Counter(row.request_id for row in rows)
    once = sum(1 for rid in ids if per_request[rid] == 1)
    served = by_fallback / (2 * n)
    half_open = FAILOVER_COOLDOWN_S + _SLACK_S
    passed = (
        warm.deployment == _PRIMARY
        and served >= 0.999
        and over_attempts == 0
        and once == len(ids)
        and len(rows) == len(ids)
        and tripped_after == FAILOVER_TRIP
        and primary_calls <= 1.2 * requests
        and upstream_calls <= 1.2 * requests
        and returned_s is not None
        and returned_s <= half_open
        and stays == len(after)
    )
    bad = Counter(a.verdict for a in outage if a.verdict != "ok")
    bad.update(
        f"deployment {a.deployment}"
        for a in outage
        if a.verdict == "ok" and a.deployment != _FALLBACK
    )
    returned = f"{returned_s:.2f} s" if returned_s is not None else "never"
    return DrillResult(
        name=NAME,
        load=(
            f"{n} unary + {n} streams, {_CONCURRENCY} concurrent ({outage_s:.0f} s), "
            f"after {requests - 2 * n} trip requests"
        ),
        faults="primary 503 on 100% of calls (first half), connection reset (second half)",
        figure=(
            f"served by the fallback: {by_fallback}/{2 * n} ({served:.1%}); attempts max "
            f"{max_attempts} (limit {_MAX_ATTEMPTS}); billed once: {once}/{len(ids)}; breaker "
            f"open after {tripped_after} failures (configured {FAILOVER_TRIP}); upstream calls "
            f"{upstream_calls} for {requests} requests ({upstream_calls / requests:.2f}x), "
            f"primary {primary_calls}; back on the primary {returned} after healing "
            f"(half-open {FAILOVER_COOLDOWN_S} s + {_SLACK_S:.0f} s slack), then {stays}/"
            f"{len(after)}"
        ),
        passed=passed,
        detail="; ".join(f"{v} x{c}" for v, c in bad.items()),
    )
