"""The soak's load and its two other counters: wrk bounded by count and time, the USAGE
stream as the NATS monitor sees it, and billing's ledger.

``SoakWrk`` runs one wrk process (``bench/wrk/soak.lua``) that cycles through the
mix's kinds of request (``soak_mix``), each with the request id ``<prefix>-<thread>-<n>``
(the edge honours a sane ``X-Request-Id`` and it becomes the ledger entry's
``request_id``). Each wrk thread stops itself once it has its share of answers,
printing ``SOAK_THREAD_DONE``; wrk's own ``--duration`` is the time bound. wrk's
main thread only wakes at the end of its duration or on SIGINT, so ``poll``
sends SIGINT once every thread has printed that line; wrk then prints the
script's ``SOAK_RESULT`` line.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from devtools.procs import Child
from gateway_common.subjects import BILLING_DURABLE, USAGE_STREAM

from .load import LoadError
from .soak_mix import MixKind
from .soak_report import ClientCounts, LedgerCounts, StreamCounts

__all__ = [
    "SoakResult",
    "SoakWrk",
    "ledger_counts",
    "parse_jsz",
    "parse_soak_output",
    "read_usage_stream",
]

_RESULT_PREFIX = "SOAK_RESULT "
#: How the script classifies a 2xx answer (its ``ok_<class>`` counts).
_ANSWER_CLASSES = ("chat", "stream", "endpoint", "grounded", "channel")
_THREAD_DONE = "SOAK_THREAD_DONE\n"
#: Seconds wrk may take to print its result after SIGINT or the end of its duration.
_FINISH_S = 30.0


@dataclass(frozen=True)
class SoakResult:
    """wrk's run: the script's exact counts and wrk's socket errors and latencies."""

    client: ClientCounts
    ok: Mapping[str, int]
    """2xx answers by what they carried: chat, stream, endpoint, grounded, channel."""
    duration_s: float
    socket_errors: Mapping[str, int]
    """connect, read, write, timeout (wrk's counts)."""
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors."""
        return self.client.answered - self.client.ok + sum(self.socket_errors.values())

    @property
    def rps(self) -> float:
        """Answers per second."""
        return self.client.answered / self.duration_s if self.duration_s else 0.0


def parse_soak_output(stdout: str) -> SoakResult:
    """Read the script's ``SOAK_RESULT`` line; ``LoadError`` if there is not exactly one."""
    lines = [line for line in stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if len(lines) != 1:
        raise LoadError(f"expected one {_RESULT_PREFIX.strip()} line from wrk, got:\n{stdout}")
    data = json.loads(lines[0].removeprefix(_RESULT_PREFIX))
    errors = data["errors"]
    latency = data["latency_us"]
    ok = {name: data[f"ok_{name}"] for name in _ANSWER_CLASSES}
    return SoakResult(
        client=ClientCounts(sent=data["sent"], answered=data["answered"], ok=sum(ok.values())),
        ok=ok,
        duration_s=data["duration_us"] / 1e6,
        socket_errors={name: errors[name] for name in ("connect", "read", "write", "timeout")},
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
    )


class SoakWrk:
    """One wrk process under the soak's two bounds; a context manager that never leaves it running.

    ``poll`` is called by the sampling loop; once it returns a bound
    (``"count"`` or ``"time"``), ``result`` waits for wrk's summary.
    """

    def __init__(
        self,
        url: str,
        *,
        script: Path,
        kinds: list[MixKind],
        cycle: tuple[str, ...],
        session_turns: int,
        id_prefix: str,
        requests: int,
        connections: int,
        max_s: float,
        log_path: Path,
        timeout_s: float = 10.0,
    ) -> None:
        self.threads = min(connections, 2)
        self._argv = [
            "wrk",
            f"--threads={self.threads}",
            f"--connections={connections}",
            f"--duration={max(1, round(max_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            f"--script={script}",
            "--latency",
            url,
        ]
        number = {kind.name: index for index, kind in enumerate(kinds, start=1)}
        self._env = {
            **os.environ,
            **_kind_env(kinds),
            "SOAK_CYCLE": ",".join(str(number[name]) for name in cycle),
            "SOAK_SESSION_TURNS": str(session_turns),
            "SOAK_ID_PREFIX": id_prefix,
            "SOAK_REQUESTS": str(requests),
            "SOAK_THREADS": str(self.threads),
        }
        self._log_path = log_path
        self._child: Child | None = None
        self.bound: str | None = None
        """``"count"`` or ``"time"`` once ``poll`` has seen wrk reach that bound."""

    def __enter__(self) -> SoakWrk:
        self._child = Child(
            "wrk", self._argv, env=self._env, cwd=Path.cwd(), log_path=self._log_path
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._child is not None:
            self._child.stop(5.0)

    def poll(self) -> str | None:
        """``"count"`` once every thread has its share of answers (wrk is then told to report),
        ``"time"`` once wrk ended on its duration, else ``None``."""
        child = self._require()
        if self.bound is None:
            if child.returncode is not None:
                self.bound = "time"
            elif self._log_path.read_text().count(_THREAD_DONE) >= self.threads:
                os.kill(child.pid, signal.SIGINT)
                self.bound = "count"
        return self.bound

    def result(self) -> SoakResult:
        """Wait for wrk to exit and read its result; ``LoadError`` if it failed."""
        child = self._require()
        if not child.wait(_FINISH_S) or child.returncode is None:
            raise LoadError(f"wrk did not finish {_FINISH_S:.0f} s after its end:\n{child.tail()}")
        if child.returncode != 0:
            raise LoadError(f"wrk exited with {child.returncode}:\n{child.tail()}")
        return parse_soak_output(self._log_path.read_text())

    def _require(self) -> Child:
        if self._child is None:
            raise LoadError("wrk is not running")
        return self._child


def _kind_env(kinds: list[MixKind]) -> dict[str, str]:
    """The script's ``SOAK_KIND_<i>_*`` variables (see ``bench/wrk/soak.lua``)."""
    env = {"SOAK_KINDS": str(len(kinds))}
    for index, kind in enumerate(kinds, start=1):
        env |= {
            f"SOAK_KIND_{index}_PATH": kind.path,
            f"SOAK_KIND_{index}_BODY": kind.body.decode(),
            f"SOAK_KIND_{index}_HEADERS": "".join(f"{k}: {v}\n" for k, v in kind.headers.items()),
            f"SOAK_KIND_{index}_SESSION": kind.session,
            f"SOAK_KIND_{index}_SESSION_BODY": kind.session_body.decode(),
        }
    return env


def parse_jsz(document: Mapping[str, Any], *, stream: str, consumer: str) -> StreamCounts:
    """``stream``'s and its durable ``consumer``'s counts from a ``/jsz?consumers=true`` answer.

    ``KeyError`` if either is missing (the stack declares both before it is ready).
    """
    for account in document.get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail["name"] != stream:
                continue
            for durable in detail.get("consumer_detail") or []:
                if durable["name"] == consumer:
                    return StreamCounts(
                        published=int(detail["state"]["last_seq"]),
                        billed=int(durable["ack_floor"]["stream_seq"]),
                        pending=int(durable["num_pending"]) + int(durable["num_ack_pending"]),
                    )
    raise KeyError(f"no stream {stream} with consumer {consumer} in the NATS monitor's answer")


def read_usage_stream(client: httpx.Client, monitor_url: str) -> StreamCounts:
    """The USAGE stream and billing's consumer, read from nats-server's monitor port."""
    reply = client.get(f"{monitor_url}/jsz", params={"streams": "true", "consumers": "true"})
    reply.raise_for_status()
    return parse_jsz(reply.json(), stream=USAGE_STREAM, consumer=BILLING_DURABLE)


def ledger_counts(database: Path, *, id_prefix: str) -> LedgerCounts:
    """Count billing's ledger (SQLite, read-only): all entries, and this run's by request id."""
    pattern = id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        (total,) = db.execute("select count(*) from ledger_entries").fetchone()
        run, distinct = db.execute(
            "select count(*), count(distinct request_id) from ledger_entries"
            " where request_id like ? escape '\\'",
            (pattern,),
        ).fetchone()
    return LedgerCounts(total=int(total), run=int(run), run_distinct=int(distinct))
