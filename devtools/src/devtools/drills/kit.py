"""The drills' shared kit: a stack with the drills' catalog, traffic helpers, ledger queries.

``DrillStack`` starts a whole ``devtools.stack.Stack`` (nats-server, the five
services, the fake provider) on free ports in a temporary data dir, on SQLite
unless a database URL is given, with ``CATALOG``: ``mock-chat`` on the healthy
fake and ``drill-break`` whose streams the fake cuts after ``BREAK_AFTER`` SSE
events (a connection reset mid-stream), ``drill-slow`` whose streams send one
event per ``SLOW_CHUNK_MS`` and ``drill-chain`` (``mock-chat`` with the
Responses API). A drill takes an optional running ``DrillStack`` so the short
forms in ``make test`` share one. A drill that starts its own stack puts it on
the database named by ``$SWITCHYARD_DRILL_DATABASE_URL`` when that is set
(``python -m devtools.drills --postgres`` sets it to a throwaway PostgreSQL
database, ``throwaway_postgres``), else on SQLite.

The router's, billing's and the edge's NATS connections, and the router's calls
to ``drill-net`` (``mock-chat`` on the fake), go through fault proxies of
``devtools.faultproxy`` (``DrillStack.proxies``: ``nats-router``,
``nats-billing``, ``nats-edge``, ``provider``); they forward untouched until a
drill (d03) switches a fault on, and it switches them off again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psycopg
import sqlalchemy as sa
from psycopg import sql

from devtools.faultproxy import FaultProxy, ProxyThread, proxy_thread
from devtools.ports import free_port
from devtools.procs import Child
from devtools.stack import Stack, throwaway_config
from gateway_common.db import sync_url

__all__ = [
    "BREAK_AFTER",
    "CATALOG",
    "DATABASE_URL_ENV",
    "FAILOVER_COOLDOWN_S",
    "FAILOVER_SWITCH",
    "FAILOVER_TRIP",
    "LEASE_SETTLE_S",
    "LEASE_TTL_S",
    "PRICE_IN",
    "PRICE_OUT",
    "PUBLISH_ACK_TIMEOUT_S",
    "PUBLISH_WINDOW_S",
    "RATELIMIT_TIMEOUT_S",
    "REAPER_INTERVAL_S",
    "SLOW_CHUNK_MS",
    "Answered",
    "DrillStack",
    "LedgerCheck",
    "check_ledger",
    "drill_database_url",
    "drill_stack",
    "ledger_rows",
    "on_kit",
    "second_edge",
    "throwaway_postgres",
    "wait_admitting",
]

#: The database a drill's own stack uses when set (else SQLite).
DATABASE_URL_ENV = "SWITCHYARD_DRILL_DATABASE_URL"
#: SSE events the fake sends on ``drill-break`` before it resets the connection.
BREAK_AFTER = 3
#: d08: the fake's switch that breaks ``drill-failover``'s primary, the retryable failures in
#: a row that open its breaker, and the breaker's open time before a half-open probe.
FAILOVER_SWITCH = "drill-primary"
FAILOVER_TRIP = 3
FAILOVER_COOLDOWN_S = 1
#: The catalog's prices of ``mock-chat`` (USD per token), for drills that price usage.
PRICE_IN = Decimal("0.00000015")
PRICE_OUT = Decimal("0.0000006")
#: d03: the router's usage publish retry window and ack timeout on the drill stack: a lost
#: ack is retried within the window, and the window is shorter than d03's NATS blackhole, so
#: the short form sees events go to the outbox and come back.
PUBLISH_WINDOW_S, PUBLISH_ACK_TIMEOUT_S = 1.5, 0.5
#: Milliseconds the fake waits after each SSE event on ``drill-slow`` (d05's open streams).
SLOW_CHUNK_MS = 1000
#: Billing's lease timing on the drill stack: short, so d05 sees a dead edge's leases reaped.
LEASE_TTL_S, LEASE_SETTLE_S, REAPER_INTERVAL_S = 3.0, 6.0, 1.0
#: The edge's rate-limit counter deadline on the drill stack (product default 0.1 s): on this
#: loaded 2-core machine a counter call can take longer, and a limit left unchecked is
#: admitted (fail open), so d07 would see a window admit more than its limit.
RATELIMIT_TIMEOUT_S = 1.0
CATALOG = f"""\
version: 1
# d09 cuts every stream on purpose: a breaker that opened on them would refuse the
# rest before their first chunk (a typed 502, correct, but d08's subject, not d09's).
# Both of its triggers are off: the run of failures and the failure rate.
resilience:
  breaker: {{consecutive_failures: 100000, min_calls: 100000, cooldown_s: 1}}
providers:
  fake:
    kind: openai
    base_url: http://127.0.0.1:8090/v1
    connect_timeout_s: 2
    read_timeout_s: 10
  drill-break:
    kind: openai
    base_url: http://127.0.0.1:8090/fault/break_after={BREAK_AFTER}/v1
    connect_timeout_s: 2
    read_timeout_s: 10
  # d08: the primary of drill-failover, broken and healed at run time (switch), with a
  # breaker of its own that does trip.
  drill-primary:
    kind: openai
    base_url: http://127.0.0.1:8090/fault/switch={FAILOVER_SWITCH}/v1
    connect_timeout_s: 2
    read_timeout_s: 10
    breaker: {{consecutive_failures: {FAILOVER_TRIP}, min_calls: 100000, cooldown_s: {FAILOVER_COOLDOWN_S}}}
  # d03: the fake through the kit's provider fault proxy (its port is filled in at start)
  drill-net:
    kind: openai
    base_url: http://127.0.0.1:{{provider_proxy_port}}/v1
    connect_timeout_s: 2
    read_timeout_s: 5
  drill-slow:
    kind: openai
    base_url: http://127.0.0.1:8090/fault/chunk_delay_ms={SLOW_CHUNK_MS}/v1
    connect_timeout_s: 2
    # d05's full form holds 300 streams open at once; the default pool (256) would make the
    # rest wait for a connection past connect_timeout_s (a typed 502)
    max_connections: 400
    read_timeout_s: 10
models:
  mock-chat:
    deployments:
      - provider: fake
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  drill-break:
    deployments:
      - provider: drill-break
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  drill-failover:
    deployments:
      - {{provider: drill-primary, model: mock-chat, name: drill-fo-primary}}
      - {{provider: fake, model: mock-chat, name: drill-fo-fallback}}
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  drill-chain:
    deployments:
      - provider: fake
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, responses, streaming]
  drill-net:
    deployments:
      - provider: drill-net
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  drill-slow:
    deployments:
      - provider: drill-slow
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
"""


class DrillStack:
    """A running stack for drills: ``stack``, its dev ``api_key``, the edge's ``base_url``,
    its fault ``proxies`` by name."""

    def __init__(self, stack: Stack, proxies: dict[str, FaultProxy]) -> None:
        self.stack = stack
        self.proxies = proxies
        assert stack.config.api_key is not None
        self.api_key: str = stack.config.api_key

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@contextlib.contextmanager
def drill_stack(database_url: str | None = None) -> Iterator[DrillStack]:
    """Start a drill stack, yield it, stop every process and remove its data dir.

    ``database_url`` None: ``$SWITCHYARD_DRILL_DATABASE_URL``, or SQLite when unset.
    """
    database_url = database_url or drill_database_url()
    data_dir = Path(tempfile.mkdtemp(prefix="sy-drill-"))
    try:
        with proxy_thread() as proxies, _started(data_dir, database_url, proxies) as stack:
            kit = DrillStack(stack, proxies.proxies)
            wait_admitting(kit)
            yield kit
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _started(data_dir: Path, database_url: str | None, proxies: ProxyThread) -> Iterator[Stack]:
    """The stack, its router, billing and edge on NATS through proxies (see the docstring)."""
    provider = proxies.add("provider", ("127.0.0.1", 0))  # target set once the ports are known
    source = data_dir / "catalog.src.yaml"
    source.write_text(CATALOG.replace("{provider_proxy_port}", str(provider.port)))
    config = throwaway_config(data_dir, database_url=database_url, catalog=source, label="drill")
    provider.target = ("127.0.0.1", config.ports.fake_provider)
    extra_env: dict[str, dict[str, str]] = {
        "billing": {
            "BILLING_ACK_WAIT_S": "5",
            "BILLING_LEASE_TTL_S": str(LEASE_TTL_S),
            "BILLING_LEASE_SETTLE_S": str(LEASE_SETTLE_S),
            "BILLING_REAPER_INTERVAL_S": str(REAPER_INTERVAL_S),
        },
        "router": {
            "ROUTER_USAGE_PUBLISH_WINDOW_S": str(PUBLISH_WINDOW_S),
            "ROUTER_USAGE_ACK_TIMEOUT_S": str(PUBLISH_ACK_TIMEOUT_S),
        },
        "edge": {"GATEWAY_RATELIMIT_TIMEOUT_S": str(RATELIMIT_TIMEOUT_S)},
    }
    for service, env in extra_env.items():
        proxy = proxies.add(f"nats-{service}", ("127.0.0.1", config.ports.nats))
        env["NATS_URL"] = f"nats://{proxy.url_netloc}"
    with Stack(dataclasses.replace(config, extra_env=extra_env)) as stack:
        yield stack


def drill_database_url() -> str | None:
    """``$SWITCHYARD_DRILL_DATABASE_URL``, or None (SQLite)."""
    return os.environ.get(DATABASE_URL_ENV) or None


@contextlib.contextmanager
def throwaway_postgres(server: str = "postgresql://postgres@127.0.0.1:5432") -> Iterator[str]:
    """A new empty database ``sy_drill_<random>`` on ``server``; its URL. Dropped after."""
    name = f"sy_drill_{secrets.token_hex(6)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_admitting(kit: DrillStack, timeout_s: float = 60.0) -> None:
    """Return once the edge answers a chat request 200.

    The stack is ready when every process answers, which can be before billing
    has subscribed to its lease subjects (a loaded machine): until then the
    edge refuses requests with 503 (budget service not answering).
    """
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "ready?"}]}
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.TransportError):
            reply = httpx.post(
                f"{kit.base_url}/v1/chat/completions", json=body, headers=kit.headers, timeout=10
            )
            if reply.status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the drill stack does not admit requests after {timeout_s} s")
        time.sleep(0.2)


class Answered(Protocol):
    """An answered request as a drill recorded it: its id and the usage its client got."""

    @property
    def request_id(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """A run's ledger rows against what its clients received (``check_ledger``)."""

    once: int
    """Answered requests with exactly one entry."""
    duplicates: int
    """Entries beyond the first of a request id, plus those beyond the first of an event id."""
    refused_billed: int
    token_mismatches: int
    """Entries whose tokens differ from the usage their client received."""
    ledger_total: Decimal
    client_total: Decimal
    """The clients' usage at ``PRICE_IN`` / ``PRICE_OUT``."""

    def exact(self, answered: int, rows: int) -> bool:
        """One entry per answered request and none else, each and the total to the unit."""
        return (
            self.once == answered == rows
            and self.duplicates == 0
            and self.refused_billed == 0
            and self.token_mismatches == 0
            and self.ledger_total == self.client_total
        )


def check_ledger(
    rows: Sequence[Any], answered: Sequence[Answered], refused_ids: Sequence[str]
) -> LedgerCheck:
    """Compare ``ledger_rows`` with the answered requests and the refused ones' ids."""
    per_request = Counter(row.request_id for row in rows)
    per_event = Counter(row.event_id for row in rows)
    by_id = {a.request_id: a for a in answered}
    return LedgerCheck(
        once=sum(1 for a in answered if per_request[a.request_id] == 1),
        duplicates=sum(c - 1 for c in per_request.values() if c > 1)
        + sum(c - 1 for c in per_event.values() if c > 1),
        refused_billed=sum(1 for r in refused_ids if r and per_request[r] > 0),
        token_mismatches=sum(
            1
            for row in rows
            if row.request_id in by_id
            and (row.prompt_tokens, row.completion_tokens)
            != (by_id[row.request_id].prompt_tokens, by_id[row.request_id].completion_tokens)
        ),
        ledger_total=sum((Decimal(str(row.total_amount)) for row in rows), Decimal(0)),
        client_total=sum(
            (PRICE_IN * a.prompt_tokens + PRICE_OUT * a.completion_tokens for a in answered),
            Decimal(0),
        ),
    )


def ledger_rows(stack: Stack, request_ids: Sequence[str]) -> list[Any]:
    """Billing's ledger entries (event and request id, tokens, total_amount) of ``request_ids``."""
    if not request_ids:
        return []
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT event_id, request_id, prompt_tokens, completion_tokens, total_amount "
                        "FROM ledger_entries WHERE request_id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": sorted(set(request_ids))},
                ).all()
            )
    finally:
        engine.dispose()


@contextlib.contextmanager
def second_edge(stack: Stack, timeout_s: float = 60.0) -> Iterator[str]:
    """Another edge process on ``stack``'s NATS, database, router and catalog; its origin.

    Same environment as the stack's edge but its own port; the log goes to the
    stack's log directory. Stopped (SIGTERM, then SIGKILL) on exit.
    """
    port = free_port()
    env = {**stack._env("edge"), "GATEWAY_PORT": str(port)}
    origin = f"http://127.0.0.1:{port}"
    child = Child(
        "edge-b",
        [sys.executable, "-m", "edge"],
        env=env,
        cwd=stack.config.cwd,
        log_path=stack.log_dir / f"edge-b-{port}.log",
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{origin}/readyz", timeout=1).status_code == 200:
                    break
            if child.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"second edge not ready:\n{child.tail()}")
            time.sleep(0.2)
        yield origin
    finally:
        child.stop(stack.config.stop_grace_s)


_T = TypeVar("_T")


def on_kit(kit: DrillStack | None, drill: Callable[[DrillStack], _T]) -> _T:
    """``drill(kit)``, on a drill stack of its own (stopped after) when ``kit`` is None."""
    if kit is not None:
        return drill(kit)
    with drill_stack() as own:
        return drill(own)
