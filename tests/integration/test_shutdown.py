"""Graceful shutdown: SIGTERM an edge or a router with streams open on a slow provider.

Each test starts its own edge (and router) processes on the SQLite stack's NATS,
database and fake provider, so the shared stack keeps running. ``mock-slow-stream``
sends one chunk per 200 ms, so a stream of N words lasts about N / 5 seconds.

- edge: after SIGTERM the edge stops accepting connections at once, the open streams
  run to ``[DONE]`` and are billed, then the process exits 0;
- edge at its deadline: a stream longer than ``GATEWAY_SHUTDOWN_GRACE_S`` ends with an
  SSE error event ``server_shutting_down`` and the process exits 0;
- router: after SIGTERM its health is no longer SERVING and new calls are refused, the
  open streams run to ``[DONE]`` and are billed, then the process exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.stack import Stack
from gateway_common.db import sync_url
from gateway_common.testing import free_port, service_process
from tests.integration.helpers import ledger_entry, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STREAMS = 3


@dataclass
class StreamResult:
    """What one client saw of its stream."""

    request_id: str = ""
    data: list[str] = field(default_factory=list)
    finished_at: float = 0.0
    started: threading.Event = field(default_factory=threading.Event)


def _ready(origin: str) -> bool | None:
    try:
        return httpx.get(f"{origin}/readyz", timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None


def _base_env(stack: Stack) -> dict[str, str]:
    return {
        "PYTHONUNBUFFERED": "1",
        "NATS_URL": stack.nats_url,
        "GATEWAY_DATA_DIR": str(stack.data_dir),
        **(
            {"GATEWAY_DATABASE_URL": stack.config.database_url} if stack.config.database_url else {}
        ),
        **{k: v for k, v in os.environ.items() if k == "VIRTUAL_ENV"},
    }


@contextlib.contextmanager
def edge(
    stack: Stack, *, router_addr: str, grace_s: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """An edge process of its own; yields its origin (once ready) and the process."""
    port = free_port()
    env = {
        **_base_env(stack),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_ROUTER_ADDR": router_addr,
        "GATEWAY_ADMIN_TOKEN": stack.config.admin_token or "",
        "GATEWAY_CATALOG_PATH": str(stack.catalog_path),
        "GATEWAY_SHUTDOWN_GRACE_S": str(grace_s),
    }
    origin = f"http://127.0.0.1:{port}"
    log = stack.log_dir / f"edge-shutdown-{port}.log"
    with service_process("edge", env, log_path=log) as proc:
        poll(lambda: _ready(origin), timeout=30)
        yield origin, proc


@contextlib.contextmanager
def router(stack: Stack, *, grace_s: float) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A router process of its own; yields its address (once SERVING) and the process."""
    port = free_port()
    env = {
        **_base_env(stack),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "ROUTER_CATALOG_PATH": str(stack.catalog_path),
        "ROUTER_METRICS_PORT": "0",
        "ROUTER_ALLOW_PRIVATE_UPSTREAMS": "true",
        "ROUTER_SHUTDOWN_GRACE_S": str(grace_s),
    }
    addr = f"127.0.0.1:{port}"
    log = stack.log_dir / f"router-shutdown-{port}.log"
    with service_process("router", env, log_path=log) as proc:
        poll(lambda: health(addr) == health_pb2.HealthCheckResponse.SERVING or None, timeout=30)
        yield addr, proc


def health(addr: str) -> int | None:
    """The router's overall health status, or None when it does not answer."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


def stream(origin: str, key: str, words: int, result: StreamResult) -> StreamResult:
    """One chat stream read to its end; ``result.started`` is set at its first data line."""
    text = " ".join(f"w{i}" for i in range(words))
    body = {
        "model": "mock-slow-stream",
        "stream": True,
        "messages": [{"role": "user", "content": f"{uuid.uuid4().hex} {text}"}],
    }
    headers = {"authorization": f"Bearer {key}"}
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{origin}/v1/chat/completions", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200, r.read()
        result.request_id = r.headers["x-request-id"]
        for line in r.iter_lines():
            if line.startswith("data: "):
                result.data.append(line.removeprefix("data: "))
                result.started.set()
    result.finished_at = time.monotonic()
    return result


@contextlib.contextmanager
def open_streams(origin: str, key: str, words: int) -> Iterator[list[Future[StreamResult]]]:
    """``STREAMS`` streams running in threads, yielded once each has its first chunk."""
    with ThreadPoolExecutor(STREAMS) as pool:
        results = [StreamResult() for _ in range(STREAMS)]
        futures = [pool.submit(stream, origin, key, words, r) for r in results]
        for result, future in zip(results, futures, strict=True):
            while not result.started.wait(0.05):
                if future.done():
                    future.result()  # raises what went wrong
                    pytest.fail("a stream ended before its first chunk")
        yield futures


def assert_completed_and_billed(stack: Stack, results: list[StreamResult], after: float) -> None:
    db_url = sync_url(stack.database_url("billing"))
    for result in results:
        assert result.data[-1] == "[DONE]", result.data[-3:]
        assert not [d for d in result.data if d.startswith('{"error"')], result.data
        assert result.finished_at > after  # it was still open when the signal came
        poll(lambda r=result: ledger_entry(db_url, r.request_id), timeout=30)


def test_sigterm_to_an_edge_lets_open_streams_finish_and_be_billed(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    key = stack.config.api_key or ""
    router_addr = f"127.0.0.1:{stack.config.ports.router}"
    with edge(stack, router_addr=router_addr, grace_s=30) as (origin, proc):
        with open_streams(origin, key, words=15) as futures:  # ~3 s each
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            def refused() -> bool | None:
                try:
                    httpx.get(f"{origin}/healthz", timeout=1)
                except httpx.TransportError:
                    return True
                return None

            poll(refused, timeout=5)  # new connections stop at once
            results = [f.result(timeout=60) for f in futures]
        assert proc.wait(timeout=30) == 0
    assert_completed_and_billed(stack, results, after=signalled)


def test_a_stream_still_open_at_the_edge_deadline_ends_with_an_error_event(
    sqlite_stack: Stack,
) -> None:
    stack = sqlite_stack
    key = stack.config.api_key or ""
    router_addr = f"127.0.0.1:{stack.config.ports.router}"
    with edge(stack, router_addr=router_addr, grace_s=1) as (origin, proc):
        with open_streams(origin, key, words=100) as futures:  # ~20 s each
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=30) for f in futures]
        assert proc.wait(timeout=30) == 0
    for result in results:
        assert result.finished_at - signalled < 6  # the 1 s grace, not the stream's 20 s
        error = orjson.loads(result.data[-1])["error"]
        assert error["code"] == "server_shutting_down", error
        assert "[DONE]" not in result.data


def test_sigterm_to_a_router_lets_open_streams_finish_and_be_billed(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    key = stack.config.api_key or ""
    with (
        router(stack, grace_s=30) as (addr, router_proc),
        edge(stack, router_addr=addr, grace_s=30) as (origin, _),
    ):
        # ~8 s each: longer than the router's former fixed 5 s grace.
        with open_streams(origin, key, words=40) as futures:
            signalled = time.monotonic()
            router_proc.send_signal(signal.SIGTERM)
            # Health leaves SERVING at once (NOT_SERVING, then no answer as the server stops).
            poll(
                lambda: health(addr) != health_pb2.HealthCheckResponse.SERVING or None,
                timeout=5,
            )
            results = [f.result(timeout=60) for f in futures]
        assert router_proc.wait(timeout=30) == 0
    assert_completed_and_billed(stack, results, after=signalled)
