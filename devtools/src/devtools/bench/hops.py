"""Per-hop timings at one connection: where Switchyard's added latency goes.

After the load, ``make bench`` sends ``requests`` sequential requests per scenario
(after a short warm-up) to Switchyard and the same to the upstream directly,
from one keep-alive ``httpx`` client, and reads every Switchyard answer's
``Server-Timing`` header (``edge``, ``router``, ``publish``, ``upstream``: see
``edge.api.proxy.server_timing``). Each figure is a median over the requests.

The header covers the time to the answer, or for a stream to its first event;
``rest`` is what the client saw beyond the header's parts: its own HTTP work
and the edge's outside the handler (uvicorn), and for a stream the body after
the first event. ``upstream`` is the router's wait on nginx, its HTTP client's
work included. Medians of parts need not add up exactly to the median total.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from .load import chat_body
from .target import Target

__all__ = ["PARTS", "Hops", "parse_timing", "probe_hops", "render_hops"]

#: The ``Server-Timing`` parts, in the order the edge writes them.
PARTS = ("edge", "router", "publish", "upstream")
_PART = re.compile(r"([a-z]+);dur=([0-9.]+)")
_WARMUP = 20


@dataclass(frozen=True)
class Hops:
    """One scenario's medians, in milliseconds."""

    stream: bool
    requests: int
    client_ms: float
    """Switchyard's answer as the client saw it (to the end of the body)."""
    direct_ms: float
    """The same request to the upstream directly."""
    parts: dict[str, float]
    """Median of each ``Server-Timing`` part."""

    @property
    def rest_ms(self) -> float:
        return self.client_ms - sum(self.parts.values())


def parse_timing(header: str) -> dict[str, float]:
    """``{"edge": 0.8, ...}`` from a ``Server-Timing`` header's ``name;dur=ms`` entries."""
    return {name: float(value) for name, value in _PART.findall(header)}


def _timed(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, str]:
    started = time.perf_counter()
    resp = client.post(url, content=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:200]}")
    return elapsed, resp.headers.get("server-timing", "")


def _median_ms(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], requests: int
) -> tuple[float, list[str]]:
    for _ in range(_WARMUP):
        _timed(client, url, body, headers)
    samples = [_timed(client, url, body, headers) for _ in range(requests)]
    return statistics.median(ms for ms, _ in samples), [timing for _, timing in samples]


def probe_hops(
    switchyard: Target, direct: Target, *, api_key: str, stream: bool, requests: int
) -> Hops:
    """Measure one scenario (see the module docstring); raises on any non-200 answer."""
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    with httpx.Client(timeout=10) as client:
        direct_ms, _ = _median_ms(
            client,
            direct.url(stream=stream),
            chat_body(direct.model(stream=stream), stream=stream),
            headers,
            requests,
        )
        client_ms, timings = _median_ms(
            client,
            switchyard.url(stream=stream),
            chat_body(switchyard.model(stream=stream), stream=stream),
            headers,
            requests,
        )
    values: dict[str, list[float]] = {part: [] for part in PARTS}
    for timing in timings:
        for name, value in parse_timing(timing).items():
            if name in values:
                values[name].append(value)
    missing = [part for part, found in values.items() if len(found) != requests]
    if missing:
        raise RuntimeError(f"Server-Timing lacks {', '.join(missing)} on some answers")
    parts = {part: statistics.median(found) for part, found in values.items()}
    return Hops(stream, requests, client_ms, direct_ms, parts)


def render_hops(hops: Sequence[Hops]) -> list[str]:
    """The Markdown table of ``hops`` (empty when there are none)."""
    if not hops:
        return []
    lines = [
        "| scenario | client saw, Switchyard | client saw, direct | added | edge + gRPC "
        "| router | usage publish | upstream | rest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in hops:
        p = h.parts
        lines.append(
            f"| {'stream' if h.stream else 'chat'} c=1 ({h.requests} requests) "
            f"| {h.client_ms:.2f} | {h.direct_ms:.2f} | {h.client_ms - h.direct_ms:.2f} "
            f"| {p['edge']:.2f} | {p['router']:.2f} | {p['publish']:.2f} | {p['upstream']:.2f} "
            f"| {h.rest_ms:.2f} |"
        )
    return [*lines, ""]
