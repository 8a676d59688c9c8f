"""The load: wrk, POSTing one fixed chat request over keep-alive connections.

``bench/wrk/post.lua`` sets the method, body and headers and, when wrk is done,
prints one ``BENCH_RESULT {...}`` JSON line with the exact counts and latency
percentiles (microseconds). wrk's own summary is parsed only for its
``Non-2xx or 3xx responses`` line, which must agree with the script's status
error count. Every non-2xx/3xx answer and every socket error (connect, read,
write, timeout) counts as an error.

Latency is wrk's: from writing a request to reading the end of its response,
so a stream's latency is the time to its last event.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["LoadError", "Scenario", "WrkResult", "chat_body", "parse_wrk_output", "run_wrk"]

_RESULT_PREFIX = "BENCH_RESULT "
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
#: Seconds wrk may run past ``--duration`` before it is killed (it stops on its own).
_OVERRUN_S = 30.0


class LoadError(RuntimeError):
    """wrk failed or printed something the harness cannot read."""


@dataclass(frozen=True, order=True)
class Scenario:
    """One kind of load: streamed or not, over how many connections."""

    stream: bool
    connections: int

    @property
    def label(self) -> str:
        """``chat c=32``, ``stream c=1``, ..."""
        return f"{'stream' if self.stream else 'chat'} c={self.connections}"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run."""

    requests: int
    duration_s: float
    errors: int
    """Non-2xx/3xx answers plus socket errors (connect, read, write, timeout)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0


def chat_body(model: str, *, stream: bool) -> bytes:
    """The request every target gets: a short two-message chat, streamed or not."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def run_wrk(
    url: str,
    *,
    body: bytes,
    api_key: str,
    connections: int,
    duration_s: float,
    script: Path,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk against ``url`` for ``duration_s`` seconds; raise ``LoadError`` if it fails.

    One wrk thread per connection up to two (wrk needs threads <= connections,
    and the machine has two cores to share with what it measures).
    """
    argv = [
        "wrk",
        f"--threads={min(connections, 2)}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        f"--script={script}",
        "--latency",
        url,
    ]
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_API_KEY": api_key}
    try:
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=duration_s + _OVERRUN_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk ran past its duration by {_OVERRUN_S:.0f} s: {argv}") from exc
    if done.returncode != 0:
        raise LoadError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk_output(done.stdout)


def parse_wrk_output(stdout: str) -> WrkResult:
    """Read the script's ``BENCH_RESULT`` line, cross-checked with wrk's non-2xx line."""
    lines = [line for line in stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if len(lines) != 1:
        raise LoadError(f"expected one {_RESULT_PREFIX.strip()} line from wrk, got:\n{stdout}")
    data = json.loads(lines[0].removeprefix(_RESULT_PREFIX))
    errors = data["errors"]
    match = _NON_2XX.search(stdout)
    non_2xx = int(match.group(1)) if match else 0
    if non_2xx != errors["status"]:
        raise LoadError(f"wrk says {non_2xx} non-2xx answers, its script {errors['status']}")
    latency = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=sum(errors.values()),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
    )
