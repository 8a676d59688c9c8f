"""Micro-benchmark: the router's CPU per call, alone, in front of nginx, over real gRPC.

    .venv/bin/python services/router/bench_router.py
    .venv/bin/python services/router/bench_router.py --unary 5000 --streams 2000 --rounds 3
    .venv/bin/python services/router/bench_router.py --source /tmp/router-old   # an older copy

Starts the fake upstream of ``make bench`` (nginx with ``bench/upstream``'s
fixed chat.completion and 11-event stream, ``devtools.bench.upstream``), a
nats-server with JetStream (every call publishes its usage event and waits
for the ack, as in production; nobody consumes them) and the router as its
own process (``python -m router``) with ``bench/switchyard/catalog.yaml``
pointing at nginx. This process is the gRPC client: ``--concurrency`` workers
share one channel and send ``Complete`` and ``StreamComplete`` calls shaped
as the edge sends them (request id metadata, a deadline, payer fields).

The router's CPU is ``utime + stime`` of its process from ``/proc/<pid>/stat``,
read when it is idle before a round and again after it, so start-up and
warm-up are not charged; the figure is CPU ms per call, median over rounds.
The client's own CPU is not counted. ``--profile`` attaches py-spy (from
``bench/.work/tools-venv``, made by ``make bench BENCH_ARGS=--profile``) to
the router for one extra round per scenario and prints its top frames.

Not a test: it takes about a minute and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.bench.layout import BenchLayout, render
from devtools.bench.upstream import Nginx
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.grpc import REQUEST_ID_KEY
from gateway_common.testing import free_port, nats_server, service_process

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the benchmark."},
]
_PY_SPY = BenchLayout().work / "tools-venv" / "bin" / "py-spy"


def cpu_times(pid: int) -> tuple[float, float]:
    """``utime`` and ``stime`` of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of one process, in seconds."""
    return sum(cpu_times(pid))


async def wait_idle(pid: int, *, timeout_s: float = 30.0) -> None:
    """Return once ``pid`` used under 5 ms of CPU in a quarter second."""
    deadline = time.monotonic() + timeout_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last < 0.005:
            return
        last = now
    raise TimeoutError(f"router (pid {pid}) did not go idle within {timeout_s} s")


def request(n: int, *, stream: bool) -> router_pb2.CompleteRequest:
    """Call ``n`` as the edge would send it (a fixed two-message chat request)."""
    model = "bench-stream" if stream else "bench-chat"
    body = {"model": model, "messages": _MESSAGES, "max_tokens": 64}
    if stream:
        body["stream"] = True
    return router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=model,
        body=orjson.dumps(body),
        request_id=f"bench-{n}",
        project_id="proj-bench",
        api_key_id="key-bench",
    )


async def one_call(stub: router_pb2_grpc.RouterStub, n: int, *, stream: bool) -> str:
    """Make call ``n``; returns ``"ok"`` or what went wrong."""
    metadata = ((REQUEST_ID_KEY, f"bench-{n}"),)
    try:
        if not stream:
            answer = await stub.Complete(request(n, stream=False), timeout=30, metadata=metadata)
            return "ok" if answer.body and answer.usage.total_tokens else "no usage"
        chunks, usage = 0, False
        async for event in stub.StreamComplete(
            request(n, stream=True), timeout=30, metadata=metadata
        ):
            kind = event.WhichOneof("event")
            if kind == "error":
                return f"error event: {event.error.code}"
            chunks += len(event.chunks.chunks) if kind == "chunks" else kind == "chunk"
            usage = usage or kind == "usage"
        return "ok" if chunks and usage else f"{chunks} chunks, usage {usage}"
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"


async def drive(
    stub: router_pb2_grpc.RouterStub, count: int, concurrency: int, *, stream: bool
) -> tuple[float, Counter[str]]:
    """``count`` calls over ``concurrency`` workers; wall seconds and outcomes."""
    outcomes: Counter[str] = Counter()
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            outcomes[await one_call(stub, n, stream=stream)] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started, outcomes


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """Sample ``pid`` (GIL holder only, native frames off) while inside."""
    proc = subprocess.Popen(
        [
            *(str(_PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--gil"),
            *("--nonblocking", "--rate", "200", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let py-spy attach before the load starts
    try:
        yield
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)


def print_profile(raw: Path, top: int = 25) -> None:
    """Self and inclusive sample shares of the hottest frames in a py-spy raw file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"  {total} samples; self (inclusive) share of the top frames:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}% ({100 * inclusive[frame] / total:5.1f}%)  {frame}")


async def bench(
    target: str, pid: int, args: argparse.Namespace, workdir: Path
) -> dict[str, list[float]]:
    """Warm up, then ``args.rounds`` measured rounds per scenario: CPU ms per call."""
    figures: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(200):
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            await asyncio.sleep(0.05)
        stub = router_pb2_grpc.RouterStub(channel)
        for scenario, count in (("chat", args.unary), ("stream", args.streams)):
            if not count:
                continue
            stream = scenario == "stream"
            _, outcomes = await drive(stub, min(count, 500), args.concurrency, stream=stream)
            if set(outcomes) != {"ok"}:
                raise SystemExit(f"{scenario} warm-up failed: {dict(outcomes)}")
            for round_no in range(args.rounds):
                await wait_idle(pid)
                user, system = cpu_times(pid)
                wall, outcomes = await drive(stub, count, args.concurrency, stream=stream)
                user_after, system_after = cpu_times(pid)
                user_ms = (user_after - user) * 1000 / count
                system_ms = (system_after - system) * 1000 / count
                cpu_ms = user_ms + system_ms
                bad = sum(n for outcome, n in outcomes.items() if outcome != "ok")
                figures.setdefault(scenario, []).append(cpu_ms)
                print(
                    f"{scenario} round {round_no + 1}: {count} calls in {wall:.2f} s "
                    f"({count / wall:,.0f}/s), router CPU {cpu_ms:.3f} ms/call "
                    f"(user {user_ms:.3f}, system {system_ms:.3f}), "
                    f"errors {bad} {dict(outcomes) if bad else ''}",
                    flush=True,
                )
            if args.profile:
                await wait_idle(pid)
                raw = Path(args.profile_dir or workdir) / f"{scenario}.txt"
                with py_spy(pid, raw):
                    await drive(stub, count, args.concurrency, stream=stream)
                print(f"py-spy, {scenario}:")
                print_profile(raw)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unary", type=int, default=5000, help="Complete calls per round")
    parser.add_argument("--streams", type=int, default=2000, help="StreamComplete calls per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy one extra round each")
    parser.add_argument("--profile-dir", type=Path, help="keep py-spy's raw stacks here")
    parser.add_argument(
        "--source", type=Path, help="run the router from this directory's `router` package"
    )
    args = parser.parse_args()
    layout = BenchLayout()
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        workdir = Path(tmp)
        with (
            Nginx(BenchLayout(work=workdir)) as nginx,
            nats_server(workdir / "nats") as nats_url,
        ):
            catalog = workdir / "catalog.yaml"
            template = layout.input("switchyard/catalog.yaml").read_text()
            catalog.write_text(render(template, {"UPSTREAM": nginx.base_url}))
            port = free_port()
            env = {
                "NATS_URL": nats_url,
                "ROUTER_HOST": "127.0.0.1",
                "ROUTER_PORT": str(port),
                "ROUTER_CATALOG_PATH": str(catalog),
            }
            if args.source:
                env["PYTHONPATH"] = str(args.source.resolve())
            log = workdir / "router.log"
            with service_process("router", env, log_path=log) as proc:
                figures = asyncio.run(bench(f"127.0.0.1:{port}", proc.pid, args, workdir))
            if proc.returncode not in (0, None):
                print(log.read_text()[-4000:], file=sys.stderr)
    for scenario, values in figures.items():
        print(
            f"{scenario}: router CPU {statistics.median(values):.3f} ms/call "
            f"(median of {len(values)}; {', '.join(f'{v:.3f}' for v in values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
