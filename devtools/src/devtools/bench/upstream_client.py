"""Microbench: the router's upstream client, httpx over aiohttp vs aiohttp directly.

Issue 20 asked whether dropping httpx (``httpx_aiohttp``'s transport) from the
router's upstream calls would save CPU per request. This measures only that:
POSTs of the bench's chat body to the bench nginx, sequential and 8 in flight,
rounds alternating between three clients (a plain ``httpx.AsyncClient`` over
``httpx_aiohttp``, the router's own ``ProviderClient`` over the same transport
as production builds it, and an ``aiohttp.ClientSession``), CPU per call from this process's
own ``/proc/self/stat`` (user + system), so nginx's share is not counted.
Run it with ``python -m devtools.bench.upstream_client``; results go to stdout
and are recorded by hand in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import uvloop
from httpx_aiohttp import AiohttpTransport

from router.providers._client import ProviderClient, _network

from .layout import BenchLayout
from .load import chat_body
from .upstream import Nginx

_CALLS = 3000
_IN_FLIGHT = 8
_ROUNDS = 4
_TICKS = os.sysconf("SC_CLK_TCK")

Post = Callable[[], Awaitable[bytes]]


def cpu_s() -> float:
    """This process's user + system CPU seconds (fields 14 and 15 of /proc/self/stat)."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _cpu_us_per_call(post: Post, in_flight: int) -> float:
    """CPU microseconds per call for ``_CALLS`` calls, ``in_flight`` at a time."""
    remaining = _CALLS

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await post()

    before = cpu_s()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return (cpu_s() - before) * 1e6 / _CALLS


async def _main() -> None:
    with Nginx(BenchLayout()) as nginx:
        url = nginx.url(stream=False)
        body = chat_body(nginx.model(stream=False), stream=False)
        headers = {"content-type": "application/json", "authorization": "Bearer bench"}
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        client = httpx.AsyncClient(
            transport=AiohttpTransport(
                limits=httpx.Limits(max_connections=64),
                client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)),
            )
        )

        router = ProviderClient(
            nginx.base_url,
            headers,
            params=None,
            timeout=httpx.Timeout(30.0),
            transport=_network(64),
        )

        async def via_router() -> bytes:
            request = router.request("POST", "/v1/chat/completions", deadline=None, content=body)
            response = await router.send(request)
            return response.content

        async def via_httpx() -> bytes:
            response = await client.post(url, content=body, headers=headers)
            return response.content

        async def direct() -> bytes:
            async with session.post(url, data=body, headers=headers) as response:
                return await response.read()

        clients: dict[str, Post] = {
            "httpx.AsyncClient": via_httpx,
            "router ProviderClient": via_router,
            "aiohttp": direct,
        }
        results: dict[tuple[str, int], list[float]] = {}
        for post in clients.values():
            await _cpu_us_per_call(post, _IN_FLIGHT)  # warm-up: connections, imports
        for _ in range(_ROUNDS):
            for in_flight in (1, _IN_FLIGHT):
                for name, post in clients.items():
                    cost = await _cpu_us_per_call(post, in_flight)
                    results.setdefault((name, in_flight), []).append(cost)
        await client.aclose()
        await router.aclose()
        await session.close()
    for (name, in_flight), costs in results.items():
        shown = ", ".join(f"{cost:.0f}" for cost in costs)
        median = statistics.median(costs)
        print(f"{name:22} in flight {in_flight}: {shown} (median {median:.0f}) us/call")


if __name__ == "__main__":
    uvloop.run(_main())  # the router's loop
