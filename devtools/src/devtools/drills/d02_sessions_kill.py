"""d02: sessions SIGKILLed during Responses chains: every answered turn stored once, every chain resolves.

Load: C clients (short 3, full 8), each growing one ``previous_response_id``
chain to ``DEPTH`` turns (short 6, full 20) with ``POST /v1/responses``. While
they run, sessions is SIGKILLed (short 2 times, full 5) and restarted after a
second. A turn the gateway refuses (sessions down: a typed 502/503/504 in
OpenAI's shape, never a hang) is retried by the client as a new attempt with
new text on the same previous response; a 200 is a successful turn.

Afterwards, against sessions' own table (``stored_responses``) and the API:

* every successful turn is stored exactly once: one row whose newest input
  item is that attempt's text, and its id is the id the client was given;
* every chain resolves: ``GET /v1/responses/{id}`` of its last turn answers,
  walking ``previous_response_id`` back reaches the first turn in ``DEPTH``
  steps through exactly the ids the client got, and a follow-up on the last
  turn succeeds with every turn's text in its expanded input.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from devtools.drills.base import DrillResult
from devtools.drills.d06_router_kill import _openai_error  # OpenAI's error object
from devtools.drills.kit import DrillStack, drill_stack
from gateway_common.db import sync_url

NAME = "d02 sessions SIGKILL"
_CLIENT_DEADLINE_S = 20.0
_BACK_WAIT_S = 60.0


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    # clients, depth, kills, and how long the clients keep retrying (a restart takes ~10 s
    # to serve again on a loaded 2-core machine)
    shape = (8, 20, 5, 400.0) if full else (3, 6, 2, 90.0)
    if kit is not None:
        return asyncio.run(_drill(kit, *shape))
    with drill_stack() as own:
        return asyncio.run(_drill(own, *shape))


async def _drill(
    kit: DrillStack, clients: int, depth: int, kills: int, deadline_s: float
) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    chains: list[list[tuple[str, str]]] = [[] for _ in range(clients)]  # (response id, text)
    verdicts: dict[str, int] = {}
    done = asyncio.Event()
    turned = asyncio.Event()  # set on every successful turn (and at the end)
    deadline = time.monotonic() + deadline_s

    def count(key: str) -> None:
        verdicts[key] = verdicts.get(key, 0) + 1

    async def client(http: httpx.AsyncClient, index: int) -> None:
        attempt = 0
        chain = chains[index]
        while len(chain) < depth and time.monotonic() < deadline:
            attempt += 1
            text = f"{marker} chain {index} attempt {attempt}"
            body: dict[str, Any] = {"model": "drill-chain", "input": text}
            if chain:
                body["previous_response_id"] = chain[-1][0]
            try:
                resp = await asyncio.wait_for(
                    http.post("/v1/responses", json=body), _CLIENT_DEADLINE_S
                )
            except TimeoutError:
                count("hang")
                continue
            except httpx.TransportError as exc:
                count(f"transport {type(exc).__name__}")
                continue
            if resp.status_code == 200:
                count("200")
                chain.append((resp.json()["id"], text))
                turned.set()
            elif resp.status_code in (502, 503, 504) and _openai_error(resp.content):
                count(f"{resp.status_code} typed")
                await asyncio.sleep(0.2)
            else:
                count(f"{resp.status_code} {resp.text[:60]}")
                await asyncio.sleep(0.1)

    async def killer() -> None:
        target = depth * clients
        for k in range(kills):
            # spread the kills over the run: kill k once the load has made (k+1)/(kills+1) of it
            while sum(map(len, chains)) < target * (k + 1) // (kills + 1) and not done.is_set():
                turned.clear()
                await turned.wait()
            await asyncio.to_thread(kit.stack.kill, "sessions")
            await asyncio.sleep(1.0)
            kit.stack.restart("sessions")

    async with httpx.AsyncClient(base_url=kit.base_url, headers=kit.headers, timeout=30) as http:
        kill_task = asyncio.create_task(killer())
        try:
            await asyncio.gather(*(client(http, i) for i in range(clients)))
        finally:
            done.set()
            turned.set()
            await kill_task
            if kit.stack.children["sessions"].returncode is not None:
                kit.stack.restart("sessions")
        # the chains and the follow-ups, once sessions serves again
        await _sessions_back(http, [chain[0][0] for chain in chains if chain])
        resolved = 0
        problems: list[str] = []
        for index, chain in enumerate(chains):
            problem = await _resolve(http, chain, depth)
            if problem:
                problems.append(f"chain {index}: {problem}")
            else:
                resolved += 1
    rows = await asyncio.to_thread(_stored, kit, marker)
    by_text: dict[str, list[str]] = {}
    for response_id, newest_text in rows:
        by_text.setdefault(newest_text, []).append(response_id)
    turns = [turn for chain in chains for turn in chain]
    once = sum(1 for response_id, text in turns if by_text.get(text) == [response_id])
    for response_id, text in turns:
        if by_text.get(text) != [response_id]:
            problems.append(
                f"turn {text!r} stored as {by_text.get(text)} (client got {response_id})"
            )
    bad = {k: v for k, v in verdicts.items() if k != "200" and not k.endswith("typed")}
    typed = sum(v for k, v in verdicts.items() if k.endswith("typed"))
    complete = sum(1 for chain in chains if len(chain) == depth)
    passed = not bad and not problems and complete == clients and once == len(turns)
    orphans = len(rows) - once
    details = [orjson.dumps(bad).decode()] if bad else []
    return DrillResult(
        name=NAME,
        load=f"{clients} Responses chains x {depth} turns, {sum(verdicts.values())} requests",
        faults=f"sessions SIGKILL x{kills}, restarted after 1 s",
        figure=(
            f"successful turns stored exactly once: {once}/{len(turns)}; "
            f"chains {depth} deep resolving: {resolved}/{clients}; "
            f"refused typed 502/503/504: {typed}; other failures or hangs: {sum(bad.values())}; "
            f"stored for refused attempts: {orphans}"
        ),
        passed=passed,
        detail="; ".join(details + problems[:5]),
    )


async def _sessions_back(http: httpx.AsyncClient, response_ids: list[str]) -> None:
    """Until a stored response can be read again (sessions restarted and subscribed)."""
    deadline = time.monotonic() + _BACK_WAIT_S
    while response_ids and time.monotonic() < deadline:
        if (await http.get(f"/v1/responses/{response_ids[0]}")).status_code == 200:
            return
        await asyncio.sleep(0.2)


async def _resolve(http: httpx.AsyncClient, chain: list[tuple[str, str]], depth: int) -> str:
    """What is wrong with ``chain``, "" if nothing: it walks back through exactly the
    client's ids, and a follow-up on its last turn sees every turn's text."""
    if len(chain) < depth:
        return f"only {len(chain)} of {depth} turns succeeded"
    walked: list[str] = []
    current: str | None = chain[-1][0]
    while current is not None and len(walked) <= depth:
        resp = await http.get(f"/v1/responses/{current}")
        if resp.status_code != 200:
            return f"GET {current}: {resp.status_code}"
        walked.append(current)
        current = resp.json().get("previous_response_id")
    if walked[::-1] != [response_id for response_id, _ in chain]:
        return f"walked {len(walked)} ids, not the client's {len(chain)}"
    body = {"model": "drill-chain", "input": "follow-up", "previous_response_id": chain[-1][0]}
    resp = await http.post("/v1/responses", json=body)
    if resp.status_code != 200:
        return f"follow-up: {resp.status_code} {resp.text[:60]}"
    items = await http.get(f"/v1/responses/{resp.json()['id']}/input_items", params={"limit": 100})
    texts = {_text(item) for item in items.json().get("data", [])}
    missing = [text for _, text in chain if text not in texts]
    return f"follow-up input lacks {len(missing)} turns" if missing else ""


def _stored(kit: DrillStack, marker: str) -> list[tuple[str, str]]:
    """(id, text of the newest input item) of every stored response of this run."""
    engine = sa.create_engine(sync_url(kit.stack.database_url("sessions")))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, input_items FROM stored_responses")).all()
    finally:
        engine.dispose()
    found: list[tuple[str, str]] = []
    for response_id, raw in rows:
        items = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
        newest = _text(items[-1]) if items else ""
        if newest.startswith(marker):
            found.append((response_id, newest))
    return found


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""
