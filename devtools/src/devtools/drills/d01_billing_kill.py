"""d01: billing SIGKILLed during mixed load through two edges: the ledger stays exact.

Load: N chat requests (short 200, full 10,000) to ``mock-chat``, 70 % unary and
30 % streamed (with ``include_usage``), 8 at a time and paced (short 10/s, full
50/s) so the load outlasts the faults, dealt round-robin over the
stack's edge and a second edge process on the same NATS and database. Billing
is SIGKILLed (short 2x, full 5x) at even shares of the answered requests and
restarted half a second later; the figure says, per kill, whether billing was
consuming or still starting (a restart takes ~15 s here, so the short form's
second kill lands in the restarted billing's start-up). The kills alone rarely
make JetStream deliver an event twice (billing acks right after its commit), so
the drill then publishes 10 % of the run's usage events again under a new
``Nats-Msg-Id`` (what a redelivery, or a publisher retry past the stream's
duplicate window, looks like to billing): billing's own dedupe must drop them. Afterwards billing must hold exactly one ledger entry per
answered request (none for a refused one), no request id and no event id
twice, the tokens of each entry equal to the usage its client received, and the
ledger total equal to that usage priced at the catalog's prices, to the
smallest unit (exact decimals, no rounding).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import orjson

from devtools.drills.base import DrillResult
from devtools.drills.d06_router_kill import _openai_error
from devtools.drills.kit import (
    DrillStack,
    check_ledger,
    drill_stack,
    ledger_rows,
    second_edge,
)
from gateway_common import subjects

NAME = "d01 billing SIGKILL"
_CONCURRENCY = 8
_DEADLINE_S = 30.0
_RESTART_AFTER_S = 0.5
_LEDGER_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class _Answer:
    request_id: str
    verdict: str  # "ok", or what went wrong
    prompt_tokens: int = 0
    completion_tokens: int = 0


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    n, kills, rate = (10_000, 5, 50.0) if full else (200, 2, 10.0)
    if kit is not None:
        return _with_second_edge(kit, n, kills, rate)
    with drill_stack() as own:
        return _with_second_edge(own, n, kills, rate)


def _with_second_edge(kit: DrillStack, n: int, kills: int, rate: float) -> DrillResult:
    with second_edge(kit.stack) as other:
        return asyncio.run(_drill(kit, [kit.base_url, other], n, kills, rate, n // 10))


async def _one(
    http: httpx.AsyncClient,
    marker: str,
    index: int,
    model: str = "mock-chat",
    stream: bool | None = None,
) -> _Answer:
    """One request; a stream unless ``stream`` is False, by default 30 % of ``index``es are."""
    stream = index % 10 >= 7 if stream is None else stream  # 70 % unary, 30 % streams
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": f"{marker} {index} how much is this?"}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    try:
        async with asyncio.timeout(_DEADLINE_S):
            async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                request_id = resp.headers.get("x-request-id", "")
                raw = await resp.aread()
    except TimeoutError:
        return _Answer("", "hang")
    except httpx.TransportError as exc:
        return _Answer("", f"transport {type(exc).__name__}")
    if resp.status_code != 200:  # "untyped": not OpenAI's error object
        typed = "" if _openai_error(raw) else " untyped"
        return _Answer(request_id, f"status {resp.status_code}{typed}")
    if stream:
        lines = raw.decode().splitlines()
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if not data or data[-1] != "[DONE]":
            return _Answer(request_id, "stream without [DONE]")
        usages = [u for chunk in data[:-1] if (u := orjson.loads(chunk).get("usage"))]
        usage = usages[-1] if usages else None
    else:
        usage = orjson.loads(raw).get("usage")
    if not usage:
        return _Answer(request_id, "no usage")
    return _Answer(request_id, "ok", usage["prompt_tokens"], usage["completion_tokens"])


async def _drill(
    kit: DrillStack, origins: list[str], n: int, kills: int, rate: float, replays: int
) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    answers: list[_Answer] = []
    queue = list(range(n))
    clients = [
        httpx.AsyncClient(base_url=origin, headers=kit.headers, timeout=_DEADLINE_S)
        for origin in origins
    ]
    kills_at: list[str] = []
    first_seq = await _usage_last_seq(kit) + 1
    started = time.monotonic()

    async def worker() -> None:
        while queue:
            index = queue.pop(0)
            # Paced: request i starts no earlier than i / rate s into the run.
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            answers.append(await _one(clients[index % len(clients)], marker, index))

    async def killer() -> None:
        # The k-th kill once n * k / (kills + 1) requests are answered. Noted for each: did
        # billing (the restarted one) write entries since it started ("consuming"), or was
        # it still starting ("starting"; a restart takes ~15 s on this loaded machine)?
        billed = 0
        for k in range(1, kills + 1):
            target = n * k // (kills + 1)
            while len(answers) < target:  # noqa: ASYNC110 (answers is a plain list)
                await asyncio.sleep(0.05)
            ids = [a.request_id for a in answers if a.request_id]
            now_billed = len(await asyncio.to_thread(ledger_rows, kit.stack, ids))
            state = "consuming" if now_billed > billed else "starting"
            billed = now_billed
            await asyncio.to_thread(kit.stack.kill, "billing")
            kills_at.append(f"{len(answers)} answered/{billed} billed, {state}")
            await asyncio.sleep(_RESTART_AFTER_S)
            kit.stack.restart("billing")

    try:
        await asyncio.gather(killer(), *(worker() for _ in range(_CONCURRENCY)))
    finally:
        for client in clients:
            await client.aclose()
        if kit.stack.children["billing"].returncode is not None:
            kit.stack.restart("billing")
    elapsed = time.monotonic() - started
    replayed = await _replay(kit, first_seq, replays)

    answered = [a for a in answers if a.verdict == "ok"]
    refused = [a for a in answers if a.verdict != "ok"]
    ids = [a.request_id for a in answers if a.request_id]
    rows = await _settled_ledger(kit, ids, len(answered))
    check = check_ledger(rows, answered, [a.request_id for a in refused])
    hangs = sum(1 for a in refused if a.verdict == "hang")
    passed = (
        len(answered) > 0
        and check.exact(len(answered), len(rows))
        and hangs == 0
        and len(kills_at) == kills
        and replayed == replays
    )
    unary = sum(1 for i in range(n) if i % 10 < 7)
    return DrillResult(
        name=NAME,
        load=(
            f"{n} requests ({unary} unary, {n - unary} streams), {_CONCURRENCY} concurrent, "
            f"2 edges, {elapsed:.0f} s"
        ),
        faults=(
            f"billing SIGKILL x{len(kills_at)} (at {', '.join(kills_at)}), "
            f"restarted after {_RESTART_AFTER_S} s; {replayed} usage events delivered again"
        ),
        figure=(
            f"answered {len(answered)}/{n}; billed once: {check.once}/{len(answered)}; "
            f"ledger entries: {len(rows)}; duplicates: {check.duplicates}; refused but billed: "
            f"{check.refused_billed}; token mismatches: {check.token_mismatches}; ledger total "
            f"{check.ledger_total.normalize()} USD vs clients' usage "
            f"{check.client_total.normalize()} USD"
        ),
        passed=passed,
        detail="; ".join(f"{v} x{c}" for v, c in Counter(a.verdict for a in refused).items()),
    )


async def _settled_ledger(kit: DrillStack, ids: list[str], expected: int) -> list[Any]:
    """The ledger rows of ``ids`` once ``expected`` are there (or the wait ran out)."""
    deadline = time.monotonic() + _LEDGER_WAIT_S
    rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    while len(rows) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        rows = await asyncio.to_thread(ledger_rows, kit.stack, ids)
    await asyncio.sleep(1.0)  # a duplicate would land right behind the first entry
    return await asyncio.to_thread(ledger_rows, kit.stack, ids)


async def _usage_last_seq(kit: DrillStack) -> int:
    nc = await nats.connect(kit.stack.nats_url)
    try:
        return int((await nc.jetstream().stream_info(subjects.USAGE_STREAM)).state.last_seq)
    finally:
        await nc.close()


async def _replay(kit: DrillStack, first_seq: int, count: int) -> int:
    """Deliver ``count`` of the run's usage events again (from ``first_seq``), as a redelivery
    or a publisher retry past the stream's duplicate window would; billing must drop them."""
    nc = await nats.connect(kit.stack.nats_url)
    js = nc.jetstream()
    replayed = 0
    try:
        for seq in range(first_seq, first_seq + count):
            msg = await js.get_msg(subjects.USAGE_STREAM, seq)
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", str(seq))
            assert msg.subject is not None and msg.data is not None
            await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"{msg_id}:again"})
            replayed += 1
    finally:
        await nc.close()
    return replayed
