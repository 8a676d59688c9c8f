"""The many-streams scenario (issue 20 point 2): N concurrent long streams, paced upstream.

``python -m devtools.bench.streams`` or ``make bench BENCH_ARGS="--scenarios streams2k"``.
``devtools.bench.paced`` is the upstream: each stream is ``--chunks`` (200)
content chunks, one every ``--interval-ms`` (20), about 4 s. The client opens
``--streams`` (2,000) streams, spread evenly over ``--ramp`` seconds, first
straight to the upstream (``direct``), then through LiteLLM (``make bench``'s
proxy, ``--litellm-workers`` workers, its venv built on first use), then through
Switchyard (the whole stack, catalog ``bench/switchyard/catalog-streams.yaml``: a
connection pool that holds every stream); ``--only`` picks among the three.
Figures per target:

    TTFB p50/p99      request written -> first ``data:`` event read (the role chunk,
                      which the upstream sends at once); Switchyard's minus direct's
                      is what the gateway adds
    late chunks       content chunks read more than 50 ms after the upstream wrote
                      them (each carries its send time, ``CLOCK_MONOTONIC``); the
                      client's own delay is in direct's figure too
    CPU per chunk     user + system CPU of the target's trees over the run, divided by
                      the content chunks delivered
    RSS per stream    (peak RSS of the trees during the run - RSS before it) / streams
    errors            streams that did not answer 200 or did not end with every chunk
                      and ``[DONE]`` before ``--timeout`` seconds

The client is one uvloop event loop in this process (raw sockets, no HTTP
library), so it shares the machine's cores with the target: on 2 shared cores
2,000 streams at 20 ms (100,000 chunks a second) are far past what any Python
gateway here can carry, so run it at reduced scale (``--streams 200``) and say so.
Bounded: every stream has ``--timeout``; the run ends when all have ended.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

import orjson
import uvloop

from devtools.ports import free_port
from devtools.procs import Child

from .layout import BenchLayout
from .litellm import LiteLLM, ensure_litellm
from .procstats import TreeMonitor, process_tree, rss_by_root, wait_idle
from .report import TARGETS
from .switchyard import Switchyard
from .target import TargetError, wait_until_ok

__all__ = ["PacedUpstream", "StreamsResult", "main", "run_streams"]

_log = logging.getLogger("devtools.bench.streams")
_LATE_S = 0.050
_MARK = b'"content":"@'


@dataclass(frozen=True)
class StreamsResult:
    """One target's figures for the scenario."""

    target: str
    streams: int
    errors: int
    failed: Mapping[str, int]
    """Failed streams by kind: ``HTTP <status>`` or ``cut short`` (no answer, or it ended early)."""
    chunks: int
    late: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    cpu_s: float
    rss_before: int
    rss_peak: int
    wall_s: float
    cpu_s_by_tree: Mapping[str, float]
    rss_before_by_tree: Mapping[str, int]
    rss_peak_by_tree: Mapping[str, int]

    @property
    def cpu_us_per_chunk(self) -> float:
        """CPU microseconds of the target's trees per content chunk delivered."""
        return 1e6 * self.cpu_s / max(self.chunks, 1)

    @property
    def kib_per_stream(self) -> float:
        """Resident KiB the target grew by per open stream."""
        return (self.rss_peak - self.rss_before) / 1024 / max(self.streams, 1)


class _Reader(asyncio.Protocol):
    """One stream: writes the request, reads the answer, times its events."""

    def __init__(self, request: bytes, done: asyncio.Future[None]) -> None:
        self._request = request
        self._done = done
        self._buffer = b""
        self.status = b""
        self.head = b""
        self.sent_at = 0.0
        self.first_at = 0.0
        self.chunks = 0
        self.late = 0
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sent_at = time.monotonic()
        cast(asyncio.Transport, transport).write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.status = data[9:12]
            self.head = data[:400]
        if self.status != b"200":
            self._finish()
            return
        if not self.first_at and b"data: " in data:
            self.first_at = now
        buffer = self._buffer + data
        cut = buffer.rfind(b"\n")
        self._buffer = buffer[cut + 1 :]
        start = 0
        while (at := buffer.find(_MARK, start, cut)) >= 0:
            end = buffer.index(b" ", at)
            self.chunks += 1
            if now - float(buffer[at + len(_MARK) : end]) > _LATE_S:
                self.late += 1
            start = end
        if b"data: [DONE]" in buffer:
            self.finished = True
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def _one(host: str, port: int, request: bytes, timeout_s: float) -> _Reader:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    reader = _Reader(request, done)
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: reader, host, port), timeout_s
        )
    except (OSError, TimeoutError):
        return reader
    try:
        await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        pass
    finally:
        transport.close()
    return reader


async def _load(
    url: str, *, api_key: str, model: str, streams: int, ramp_s: float, timeout_s: float
) -> list[_Reader]:
    parts = urlsplit(url)
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Stream to the benchmark."}],
            "max_tokens": 1024,
            "stream": True,
        }
    )
    request = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        f"authorization: Bearer {api_key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    tasks = []
    for index in range(streams):
        tasks.append(
            asyncio.create_task(
                _one(parts.hostname or "127.0.0.1", parts.port or 80, request, timeout_s)
            )
        )
        await asyncio.sleep(ramp_s * (index + 1) / streams - ramp_s * index / streams)
    return list(await asyncio.gather(*tasks))


def run_streams(
    name: str,
    url: str,
    roots: Mapping[str, int],
    *,
    api_key: str,
    model: str,
    streams: int,
    chunks: int,
    ramp_s: float,
    timeout_s: float,
) -> StreamsResult:
    """Open ``streams`` streams against ``url`` and measure ``roots``' trees meanwhile."""
    wait_idle(roots, max_s=30)
    before_by_tree = rss_by_root(process_tree(roots), roots)
    started = time.monotonic()
    with TreeMonitor(roots) as monitor:
        readers = uvloop.run(
            _load(
                url,
                api_key=api_key,
                model=model,
                streams=streams,
                ramp_s=ramp_s,
                timeout_s=timeout_s,
            )
        )
        monitor.settle(max_s=30)
    wall = time.monotonic() - started
    usage = monitor.usage
    ttfb = sorted(1000 * (r.first_at - r.sent_at) for r in readers if r.first_at)
    ok = [r for r in readers if r.status == b"200" and r.finished and r.chunks == chunks]
    ok_ids = {id(r) for r in ok}
    failures = [r for r in readers if id(r) not in ok_ids]
    failed = Counter(
        f"HTTP {r.status.decode()}" if r.status not in (b"", b"200") else "cut short"
        for r in failures
    )
    if failures:
        _log.warning("%s: %d failed streams; the first one read %r", name, len(failures),
                     failures[0].head)  # fmt: skip
    return StreamsResult(
        target=name,
        streams=streams,
        errors=streams - len(ok),
        failed=dict(failed),
        chunks=sum(r.chunks for r in readers),
        late=sum(r.late for r in readers),
        ttfb_p50_ms=statistics.median(ttfb) if ttfb else float("nan"),
        ttfb_p99_ms=ttfb[min(len(ttfb) - 1, int(0.99 * len(ttfb)))] if ttfb else float("nan"),
        cpu_s=usage.total_cpu_s,
        rss_before=sum(before_by_tree.values()),
        rss_peak=usage.peak_rss,
        wall_s=wall,
        cpu_s_by_tree=usage.cpu_s,
        rss_before_by_tree=before_by_tree,
        rss_peak_by_tree=usage.peak_rss_by_root,
    )


class PacedUpstream:
    """``devtools.bench.paced`` on a free loopback port, as a child process."""

    def __init__(self, layout: BenchLayout, *, chunks: int, interval_ms: float) -> None:
        self._layout = layout
        self._argv = [
            sys.executable, "-m", "devtools.bench.paced", "--chunks", str(chunks),
            "--interval-ms", str(interval_ms),
        ]  # fmt: skip
        self.port = free_port()
        self._child: Child | None = None

    @property
    def base_url(self) -> str:
        """The upstream's origin."""
        return f"http://127.0.0.1:{self.port}"

    def process_roots(self) -> dict[str, int]:
        """The upstream's own process (``direct``'s tree)."""
        if self._child is None:
            raise TargetError("the paced upstream is not running")
        return {"paced": self._child.pid}

    def __enter__(self) -> PacedUpstream:
        work = self._layout.scratch("paced")
        self._child = Child(
            "paced",
            [*self._argv, "--port", str(self.port)],
            env={},
            cwd=work,
            log_path=work / "paced.log",
        )
        try:
            wait_until_ok(f"{self.base_url}/healthz", self._child, timeout_s=20, what="paced")
        except BaseException:
            self._child.stop(5)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._child is not None:
            self._child.stop(5)


def _errors(result: StreamsResult) -> str:
    kinds = ", ".join(f"{kind}: {count:,}" for kind, count in sorted(result.failed.items()))
    return f"{result.errors:,} ({kinds})" if kinds else f"{result.errors:,}"


def render(results: Sequence[StreamsResult], *, settings: str, load: str) -> str:
    """The Markdown table of the run, with added TTFB over ``direct``."""
    direct = next((r for r in results if r.target == "direct"), None)
    lines = [
        f"Run: {settings}; load average before: {load}.",
        "",
        "| target | streams | errors | chunks | late > 50 ms | TTFB p50 ms | TTFB p99 ms "
        "| added p50 / p99 ms | CPU µs/chunk | RSS KiB/stream | RSS before -> peak MiB | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        added = (
            f"{r.ttfb_p50_ms - direct.ttfb_p50_ms:.2f} / {r.ttfb_p99_ms - direct.ttfb_p99_ms:.2f}"
            if direct is not None and r is not direct
            else ""
        )
        lines.append(
            f"| {r.target} | {r.streams:,} | {_errors(r)} | {r.chunks:,} | "
            f"{r.late:,} ({100 * r.late / max(r.chunks, 1):.1f} %) | {r.ttfb_p50_ms:.2f} | "
            f"{r.ttfb_p99_ms:.2f} | {added} | {r.cpu_us_per_chunk:.1f} | "
            f"{r.kib_per_stream:.1f} | {r.rss_before / 2**20:.1f} -> {r.rss_peak / 2**20:.1f} | "
            f"{r.wall_s:.1f} |"
        )
    litellm = next((r for r in results if r.target == "litellm"), None)
    switchyard = next((r for r in results if r.target == "switchyard"), None)
    if litellm is not None and switchyard is not None:
        lines += [
            "",
            f"Switchyard / LiteLLM: CPU per chunk "
            f"{switchyard.cpu_us_per_chunk / max(litellm.cpu_us_per_chunk, 1e-9):.2f}x, "
            f"RSS per stream {switchyard.kib_per_stream / max(litellm.kib_per_stream, 1e-9):.2f}x, "
            f"late chunks {switchyard.late:,} against {litellm.late:,}, streams completed "
            f"{switchyard.streams - switchyard.errors:,} against {litellm.streams - litellm.errors:,}.",
        ]
    for r in results:
        if r is direct:
            continue
        lines += [
            "",
            f"{r.target} per process: CPU µs per chunk, RSS at rest -> peak under load, MiB:",
            "",
            "| | " + " | ".join(r.cpu_s_by_tree) + " |",
            "|---|" + "---|" * len(r.cpu_s_by_tree),
            "| CPU µs/chunk | "
            + " | ".join(f"{1e6 * c / max(r.chunks, 1):.1f}" for c in r.cpu_s_by_tree.values())
            + " |",
            "| RSS MiB | "
            + " | ".join(
                f"{r.rss_before_by_tree.get(name, 0) / 2**20:.1f} -> {peak / 2**20:.1f}"
                for name, peak in r.rss_peak_by_tree.items()
            )
            + " |",
        ]
    return "\n".join(lines)


def scenario(args: argparse.Namespace) -> tuple[list[StreamsResult], str]:
    """Run the scenario (options of ``add_arguments``) on ``direct`` and Switchyard."""
    layout = BenchLayout()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    api_key = "sk-bench-" + secrets.token_urlsafe(16)

    def run(name: str, url: str, roots: Mapping[str, int], model: str) -> StreamsResult:
        _log.info("%s: %d streams of %d chunks", name, args.streams, args.chunks)
        result = run_streams(
            name, url, roots, api_key=api_key, model=model, streams=args.streams,
            chunks=args.chunks, ramp_s=args.ramp, timeout_s=args.timeout,
        )  # fmt: skip
        _log.info("%s: %s", name, result)
        return result

    results: list[StreamsResult] = []
    with PacedUpstream(layout, chunks=args.chunks, interval_ms=args.interval_ms) as upstream:
        if "direct" in args.only:
            url = f"{upstream.base_url}/v1/chat/completions"
            results.append(run("direct", url, upstream.process_roots(), "bench-paced"))
        if "litellm" in args.only:
            venv = ensure_litellm(layout)
            _log.info("starting LiteLLM with %d workers", args.litellm_workers)
            with LiteLLM(
                layout, venv=venv, upstream_url=upstream.base_url, api_key=api_key,
                workers=args.litellm_workers,
            ) as litellm:  # fmt: skip
                roots = litellm.process_roots()
                results.append(run("litellm", litellm.url(stream=True), roots, "bench-stream"))
        if "switchyard" in args.only:
            _log.info("starting Switchyard (NATS and five services)")
            with Switchyard(
                layout,
                upstream_url=upstream.base_url,
                api_key=api_key,
                catalog="switchyard/catalog-streams.yaml",
            ) as switchyard:
                roots = switchyard.process_roots()
                results.append(
                    run("switchyard", switchyard.url(stream=True), roots, "bench-stream")
                )
    settings = (
        f"`python -m devtools.bench.streams --streams {args.streams} --chunks {args.chunks} "
        f"--interval-ms {args.interval_ms:g} --ramp {args.ramp:g} --only {','.join(args.only)} "
        f"--litellm-workers {args.litellm_workers}`"
    )
    return results, render(results, settings=settings, load=load)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options (also ``make bench``'s, with ``--scenarios streams2k``)."""
    parser.add_argument("--streams", type=int, default=2000, help="concurrent streams (2000)")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks each (200)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="between chunks (20)")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open them all (2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per stream (60)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario and print its table; exit 1 if any stream failed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.streams", description=__doc__)
    add_arguments(parser)
    # ``python -m devtools.bench`` has these two itself (shared with the wrk scenarios).
    parser.add_argument(
        "--only", type=lambda text: [t for t in TARGETS if t in text.split(",")],
        default=list(TARGETS), help="targets to run (direct,litellm,switchyard)",
    )  # fmt: skip
    parser.add_argument("--litellm-workers", type=int, default=os.cpu_count() or 1)
    results, report = scenario(parser.parse_args(argv))
    sys.stdout.write(report + "\n")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
