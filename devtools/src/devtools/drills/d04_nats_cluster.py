"""d04: a 3-node NATS cluster restarted under load: no usage event lost or doubled.

Setup: ``devtools.natscluster.NatsCluster`` (three nats-server processes on
loopback, cluster routes, JetStream with a store dir each and ``sync_interval:
always``, as deploy/k8s/base/nats.conf) and a stack of its own (router, billing,
edge, the fake; one model) whose services take all three URLs and declare every stream R3
(``NATS_STREAM_REPLICAS=3``).

Load: chat requests to ``mock-chat``, 70 % unary and 30 % streamed, paced
(short 10/s for 8 s, full 20/s for 150 s), 8 at a time (d01's requests).
Faults: the node leading the usage stream is restarted (SIGTERM, as a rolling
restart does; started again at once) every 30 s in the full form, once in the
short; the whole cluster is SIGKILLed and started again once, mid-run; and
one node following the usage stream is SIGKILLed and started with its
JetStream store wiped (a lost disk), late in the run.

Checked afterwards, over the usage stream's messages of the run and billing's
ledger: every answered request has exactly one usage event in the stream and
one ledger entry (0 lost), no event id and no request id twice in either (0
duplicates), no ledger entry for a request the client saw refused, no hang,
at least 99.9 % of the requests answered 200, and the wiped node's own replica
of the usage stream caught up (its ``/jsz`` holds as many messages, up to the
same last sequence, as the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from devtools.drills.base import DrillResult
from devtools.drills.d01_billing_kill import _Answer, _one, _settled_ledger
from devtools.drills.kit import DrillStack, drill_database_url, wait_admitting
from devtools.natscluster import NatsCluster
from devtools.stack import Stack, throwaway_config
from gateway_common import subjects

NAME = "d04 NATS cluster restarts"
#: Every stream's replicas on the cluster (a majority of 3 acks each write).
REPLICAS = 3
#: The share of requests that must be answered 200.
SUCCESS_THRESHOLD = 0.999
_CONCURRENCY = 8
_SERVICES = ("router", "billing", "edge")
_STREAM_WAIT_S = 60.0
#: How long the drill's own stream API requests are retried while a stream elects a leader.
_ELECTION_WAIT_S = 60.0

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Form:
    """How long and how fast the load runs, and when (s into it) each fault is injected."""

    duration_s: float
    rate: float
    node_restarts_at: tuple[float, ...]
    cluster_restart_at: float
    wipe_at: float


SHORT = Form(
    duration_s=8.0, rate=10.0, node_restarts_at=(1.5,), cluster_restart_at=4.5, wipe_at=6.5
)
FULL = Form(
    duration_s=150.0,
    rate=20.0,
    node_restarts_at=(30.0, 60.0, 90.0, 120.0),
    cluster_restart_at=75.0,
    wipe_at=105.0,
)


#: The drill's own catalog: ``mock-chat`` on the healthy fake, the breaker off (a node
#: restart must not open it; d08's subject).
_CATALOG = """\
version: 1
resilience:
  breaker: {consecutive_failures: 100000, min_calls: 100000, cooldown_s: 1}
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:8090/v1", connect_timeout_s: 2, read_timeout_s: 10}
models:
  mock-chat:
    deployments: [{provider: fake, model: mock-chat}]
    prices: {input: "0.00000015", output: "0.0000006"}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
"""


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on a cluster and stack of its own (``kit``, a single-node stack, is not used)."""
    data_dir = Path(tempfile.mkdtemp(prefix="sy-d04-"))
    try:
        with NatsCluster(data_dir / "cluster") as cluster, _stack(data_dir, cluster) as own:
            return asyncio.run(_drill(own, cluster, FULL if full else SHORT))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _stack(data_dir: Path, cluster: NatsCluster) -> Iterator[DrillStack]:
    """Router, billing and edge (and the fake) on ``cluster``, every stream R``REPLICAS``."""
    source = data_dir / "catalog.src.yaml"
    source.write_text(_CATALOG)
    env = {"NATS_STREAM_REPLICAS": str(REPLICAS)}
    extra_env = {svc: dict(env) for svc in _SERVICES}
    extra_env["billing"]["BILLING_ACK_WAIT_S"] = "5"  # a lost ack is redelivered soon
    config = throwaway_config(
        data_dir / "stack",
        database_url=drill_database_url(),
        catalog=source,
        label="drill",
        extra_env=extra_env,
    )
    with Stack(dataclasses.replace(config, nats_url=cluster.urls, services=_SERVICES)) as stack:
        kit = DrillStack(stack, {})  # no fault proxies: the faults here are the nodes
        wait_admitting(kit)
        yield kit


async def _drill(kit: DrillStack, cluster: NatsCluster, form: Form) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    n = int(form.duration_s * form.rate)
    answers: list[tuple[float, _Answer]] = []  # (start, s into the run; answer)
    faults: list[tuple[float, str]] = []  # (injected, s into the run; what and its recovery)
    wiped: list[int] = []
    nc = await nats.connect(
        servers=cluster.urls.split(","), max_reconnect_attempts=-1, error_cb=_quiet
    )
    js = nc.jetstream()
    first_seq = (await _usage_info(js)).state.last_seq + 1
    queue = list(range(n))
    started = time.monotonic()

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            index = queue.pop(0)
            # Paced: request i starts no earlier than i / rate s into the run.
            await asyncio.sleep(max(0.0, started + index / form.rate - time.monotonic()))
            offset_s = time.monotonic() - started
            answers.append((offset_s, await _one(http, marker, index)))

    async def faulter() -> None:
        schedule = sorted(
            [(t, "node") for t in form.node_restarts_at]
            + [(form.cluster_restart_at, "cluster"), (form.wipe_at, "wipe")]
        )
        for offset_s, kind in schedule:
            await asyncio.sleep(max(0.0, started + offset_s - time.monotonic()))
            if kind == "node":
                leader = await _usage_leader(js)
                await asyncio.to_thread(cluster.restart, leader, signal.SIGTERM)
                what = f"n{leader} (usage leader) SIGTERM"
            elif kind == "wipe":
                follower = (await _usage_leader(js) + 1) % len(cluster.nodes)
                await asyncio.to_thread(cluster.restart, follower, signal.SIGKILL, wipe=True)
                wiped.append(follower)
                what = f"n{follower} (usage follower) SIGKILL, store wiped"
            else:
                await asyncio.to_thread(cluster.restart_all, signal.SIGKILL)
                what = "all 3 SIGKILL"
            took = await asyncio.to_thread(cluster.wait_healthy)
            faults.append((offset_s, f"{what} at {offset_s:g} s, healthy {took:.1f} s later"))

    async with httpx.AsyncClient(base_url=kit.base_url, headers=kit.headers, timeout=30) as http:
        try:
            await asyncio.gather(faulter(), *(worker(http) for _ in range(_CONCURRENCY)))
        finally:
            elapsed = time.monotonic() - started
    answered_ids = {a.request_id for _, a in answers if a.verdict == "ok"}
    try:
        events = await _usage_events(js, first_seq, answered_ids)
        catch_up = [await _caught_up(js, cluster, node) for node in wiped]
    finally:
        await nc.close()
    ids = [a.request_id for _, a in answers if a.request_id]
    rows = await _settled_ledger(kit, ids, len(answered_ids))
    return _verdict(form, n, answers, events, rows, faults, catch_up, elapsed)


def _verdict(
    form: Form,
    n: int,
    timed: list[tuple[float, _Answer]],
    events: list[tuple[str, str]],
    rows: list[Any],
    faults: list[tuple[float, str]],
    catch_up: list[tuple[bool, str]],
    elapsed: float,
) -> DrillResult:
    answers = [a for _, a in timed]
    answered = [a for a in answers if a.verdict == "ok"]
    refused = [a for a in answers if a.verdict != "ok"]
    in_stream = Counter(request_id for _, request_id in events)
    in_ledger = Counter(row.request_id for row in rows)
    stream_dups = _twice(e for e, _ in events) + _twice(r for _, r in events)
    ledger_dups = _twice(row.request_id for row in rows) + _twice(row.event_id for row in rows)
    lost_stream = sum(1 for a in answered if in_stream[a.request_id] == 0)
    lost_ledger = sum(1 for a in answered if in_ledger[a.request_id] == 0)
    refused_billed = sum(1 for a in refused if in_ledger[a.request_id] > 0)
    hangs = sum(1 for a in refused if a.verdict == "hang")
    share = len(answered) / n if n else 0.0
    # Each refusal is put down to the last fault injected before the request started.
    blame = Counter(
        next((f"after {what.split(' at ')[0]}" for t, what in reversed(faults) if t <= at), "")
        or "before any fault"
        for at, a in timed
        if a.verdict != "ok"
    )
    passed = (
        share >= SUCCESS_THRESHOLD
        and lost_stream == lost_ledger == 0
        and stream_dups == ledger_dups == 0
        and refused_billed == 0
        and hangs == 0
        and len(faults) == len(form.node_restarts_at) + 2
        and len(catch_up) == 1
        and all(ok for ok, _ in catch_up)
    )
    unary = sum(1 for i in range(n) if i % 10 < 7)
    return DrillResult(
        name=NAME,
        load=(
            f"{n} requests ({unary} unary, {n - unary} streams) at {form.rate:g}/s, "
            f"{_CONCURRENCY} concurrent, {elapsed:.0f} s, R{REPLICAS} streams, sync always"
        ),
        faults="; ".join(what for _, what in faults) or "none",
        figure=(
            f"answered {len(answered)}/{n} ({100 * share:.1f} %, threshold "
            f"{100 * SUCCESS_THRESHOLD:g} %); lost: {lost_stream} in the stream, {lost_ledger} "
            f"in the ledger; duplicates: {stream_dups} in the stream, {ledger_dups} in the "
            f"ledger; refused but billed: {refused_billed}; hangs: {hangs}; "
            + "; ".join(what for _, what in catch_up)
        ),
        passed=passed,
        detail="; ".join(
            [f"{v} x{c}" for v, c in Counter(a.verdict for a in refused).items()]
            + [f"refused {where}: {c}" for where, c in blame.items()]
        ),
    )


def _twice(keys: Iterable[str]) -> int:
    """How many of ``keys`` repeat an earlier one."""
    return sum(c - 1 for c in Counter(keys).values() if c > 1)


async def _quiet(exc: Exception) -> None:
    """The drill's own connection sees every restart; its reconnects are expected."""


async def _usage_leader(js: JetStreamContext) -> int:
    """The index of the node leading the usage stream (its server name is ``n<index>``)."""

    async def leader() -> int:
        info = await js.stream_info(subjects.USAGE_STREAM)
        name = info.cluster.leader if info.cluster else None
        if not name or not name.startswith("n"):
            raise _NoLeader(f"usage stream has no leader: {info.cluster}")
        return int(name[1:])

    return await _through_election(leader)


async def _usage_info(js: JetStreamContext) -> Any:
    return await _through_election(lambda: js.stream_info(subjects.USAGE_STREAM))


class _NoLeader(Exception):
    """The stream answered, but has not elected a leader yet."""


async def _through_election(call: Callable[[], Awaitable[_T]]) -> _T:
    """``call``'s answer, retried for up to ``_ELECTION_WAIT_S``: after a node or the whole
    cluster restarts, a stream API request times out, finds no responder or is refused
    (503) until the stream has a leader again."""
    deadline = time.monotonic() + _ELECTION_WAIT_S
    while True:
        try:
            return await call()
        except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError, _NoLeader):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def _caught_up(js: JetStreamContext, cluster: NatsCluster, node: int) -> tuple[bool, str]:
    """Whether node ``node``'s own replica of the usage stream holds what the stream holds
    (messages and last sequence, by its ``/jsz``), waited for up to ``_STREAM_WAIT_S``;
    and the figure saying so."""
    deadline = time.monotonic() + _STREAM_WAIT_S
    while True:
        want = (await _usage_info(js)).state
        have = await asyncio.to_thread(cluster.stream_state, node, subjects.USAGE_STREAM) or {}
        ok = have.get("messages") == want.messages and have.get("last_seq") == want.last_seq
        if ok or time.monotonic() > deadline:
            return ok, (
                f"n{node}'s wiped replica {'caught up' if ok else 'NOT caught up'}: "
                f"{have.get('messages')} messages up to seq {have.get('last_seq')} "
                f"(stream {want.messages} up to {want.last_seq})"
            )
        await asyncio.sleep(0.5)


async def _usage_events(
    js: JetStreamContext, first_seq: int, answered: set[str]
) -> list[tuple[str, str]]:
    """(event id, request id) of every usage event stored from ``first_seq`` on, read once
    the stream holds an event of every ``answered`` request (or ``_STREAM_WAIT_S`` ran out:
    a router may still be replaying events it could not publish at the time)."""
    events: list[tuple[str, str]] = []
    seq = first_seq
    deadline = time.monotonic() + _STREAM_WAIT_S
    while True:
        last_seq = (await _usage_info(js)).state.last_seq
        for next_seq in range(seq, last_seq + 1):
            msg = await _through_election(partial(js.get_msg, subjects.USAGE_STREAM, next_seq))
            event = orjson.loads(msg.data or b"{}")
            events.append((event["event_id"], event["request_id"]))
        seq = last_seq + 1
        if answered <= {r for _, r in events} or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.5)
