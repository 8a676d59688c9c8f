"""d06: the router SIGKILLed under load: in-flight requests fail fast in the API's shape.

Load: 4 clients send unary chat requests in a loop. The router is SIGKILLed
while they run; every answer in the outage must be a 502 or 503 carrying
OpenAI's error object (no hang past the client's deadline, no other status),
and once the router is restarted requests succeed again (the edge reconnects).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson

from devtools.drills.base import DrillResult
from devtools.drills.kit import DrillStack, drill_stack

NAME = "d06 router SIGKILL"
_CLIENT_DEADLINE_S = 15.0


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    rounds = 3 if full else 1
    if kit is not None:
        return asyncio.run(_drill(kit, rounds))
    with drill_stack() as own:
        return asyncio.run(_drill(own, rounds))


async def _drill(kit: DrillStack, rounds: int) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    verdicts: dict[str, int] = {}
    stop = asyncio.Event()

    async def client(http: httpx.AsyncClient, index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "model": "mock-chat",
                "messages": [{"role": "user", "content": f"{marker} {index} {n}"}],
            }
            try:
                resp = await asyncio.wait_for(
                    http.post("/v1/chat/completions", json=body), _CLIENT_DEADLINE_S
                )
            except TimeoutError:
                key = "hang"
            except httpx.TransportError as exc:
                key = f"transport {type(exc).__name__}"
            else:
                if resp.status_code == 200:
                    key = "200"
                elif resp.status_code in (502, 503) and _openai_error(resp.content):
                    key = f"{resp.status_code} typed"
                else:
                    key = f"{resp.status_code} {resp.text[:60]}"
            verdicts[key] = verdicts.get(key, 0) + 1

    recovered_s: list[float] = []
    async with httpx.AsyncClient(base_url=kit.base_url, headers=kit.headers, timeout=30) as http:
        tasks = [asyncio.create_task(client(http, i)) for i in range(4)]
        try:
            for _ in range(rounds):
                await asyncio.sleep(0.5)  # load before the fault
                await asyncio.to_thread(kit.stack.kill, "router")
                await asyncio.sleep(1.0)  # the outage, under load
                kit.stack.restart("router")
                started = time.monotonic()
                while True:
                    body = {
                        "model": "mock-chat",
                        "messages": [{"role": "user", "content": "probe"}],
                    }
                    resp = await http.post("/v1/chat/completions", json=body)
                    if resp.status_code == 200:
                        break
                    if time.monotonic() - started > 30:
                        break
                    await asyncio.sleep(0.1)
                recovered_s.append(time.monotonic() - started)
            ok_before = verdicts.get("200", 0)
            await asyncio.sleep(0.5)  # served after the restart
            ok_after = verdicts.get("200", 0) - ok_before
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            if kit.stack.children["router"].returncode is not None:
                kit.stack.restart("router")
    typed = sum(v for k, v in verdicts.items() if k.endswith("typed"))
    bad = {k: v for k, v in verdicts.items() if k != "200" and not k.endswith("typed")}
    total = sum(verdicts.values())
    passed = not bad and typed > 0 and ok_after > 0 and all(s < 30 for s in recovered_s)
    return DrillResult(
        name=NAME,
        load=f"4 clients looping unary chat, {total} requests",
        faults=f"router SIGKILL x{rounds}, restarted after 1 s",
        figure=(
            f"failed typed 502/503: {typed}; other failures or hangs: {sum(bad.values())}; "
            f"served after restart: {ok_after}; recovery {max(recovered_s):.1f} s"
        ),
        passed=passed,
        detail=orjson.dumps(bad).decode() if bad else "",
    )


def _openai_error(content: bytes) -> bool:
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error
