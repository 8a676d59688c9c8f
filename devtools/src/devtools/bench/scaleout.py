"""``python -m devtools.bench.scaleout`` (``make bench-scaleout``): throughput and CPU per request
with 1, 2 and 4 edge and router replicas on one NATS, one billing, sessions and rag (issue 20,
point 4), and what the state the replicas share costs per request.

Order:

    nginx (the bench's fixed upstream) and Switchyard (``switchyard.Switchyard``: NATS, edge,
        router, billing, sessions, rag; SQLite under ``bench/.work/scaleout``)
    tenants through the admin API: ``plain`` (a key, no budget, no limits: ``make bench``'s
        case) and ``governed`` (a project budget, so every edge leases from billing, and a
        project rate limit, so every request is counted in NATS's shared counters)
    per row (``ROWS``): edge/router pairs added up to the row's replica count (pair k: a
        router on its own ports, an edge whose ``GATEWAY_ROUTER_ADDR`` is that router), then
        one wrk per edge for ``--seconds``, the ``--connections`` split evenly between them,
        all unary chat; ``TreeMonitor`` charges every process's CPU over the load and its
        settling (billing's ledger writes included)
    per row, read before and after: nats-server's ``/varz`` (messages in and out), billing's
        ``switchyard_billing_requests`` by subject (lease RPCs), billing's ledger rows

Figures are per answered request, from one run (the machine is shared: see the load
average printed with them). ``--write`` puts the table into docs/benchmarks.md between
this module's markers.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from devtools.ports import free_ports
from devtools.stack import Stack

from .layout import REPO_ROOT, BenchLayout
from .load import WrkResult, chat_body, run_wrk
from .machine import describe_machine
from .procstats import TreeMonitor
from .report import write_section
from .switchyard import Switchyard
from .target import TargetError, wait_until_ok
from .upstream import Nginx

__all__ = ["ROWS", "Counters", "main", "parse_billing_requests"]

BEGIN = "<!-- BEGIN make bench-scaleout: generated, do not edit by hand -->"
END = "<!-- END make bench-scaleout -->"
#: (tenant, edge/router replicas), in run order; replicas only grow, so pairs are only added.
ROWS = (("plain", 1), ("governed", 1), ("governed", 2), ("governed", 4))
_LEASE_SUBJECT = "billing.budget.lease.v1"
_BILLING_REQUESTS = re.compile(
    r"^switchyard_billing_requests_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", re.M
)
_log = logging.getLogger("devtools.bench.scaleout")


@dataclass(frozen=True)
class Counters:
    """The shared services' counters at one moment."""

    nats_in: int
    """Messages nats-server received from clients."""
    nats_out: int
    """Messages it delivered to subscribers."""
    js_writes: int
    """Messages JetStream stored, over every stream (usage events, rate-limit counter
    increments, transcripts): the sum of the streams' last sequences."""
    leases: int
    """Lease requests billing answered."""
    billing_rpcs: int
    """Every request billing answered on its subjects."""
    ledger_rows: int
    """Ledger entries plus their line items."""

    def minus(self, other: Counters) -> Counters:
        return Counters(
            self.nats_in - other.nats_in,
            self.nats_out - other.nats_out,
            self.js_writes - other.js_writes,
            self.leases - other.leases,
            self.billing_rpcs - other.billing_rpcs,
            self.ledger_rows - other.ledger_rows,
        )


def parse_billing_requests(metrics: str) -> dict[str, float]:
    """``switchyard_billing_requests_total`` summed over statuses, by subject."""
    by_subject: dict[str, float] = {}
    for match in _BILLING_REQUESTS.finditer(metrics):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        subject = labels.get("subject", "")
        by_subject[subject] = by_subject.get(subject, 0.0) + float(match.group("value"))
    return by_subject


def _counters(http: httpx.Client, stack: Stack) -> Counters:
    ports = stack.config.ports
    varz = http.get(f"http://127.0.0.1:{ports.nats_monitor}/varz").json()
    jsz = http.get(f"http://127.0.0.1:{ports.nats_monitor}/jsz", params={"streams": "true"}).json()
    js_writes = sum(
        int(stream["state"]["last_seq"])
        for account in jsz.get("account_details") or []
        for stream in account.get("stream_detail") or []
    )
    metrics = http.get(f"http://127.0.0.1:{ports.billing_metrics}/metrics").text
    by_subject = parse_billing_requests(metrics)
    path = stack.data_dir / "billing.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        (rows,) = db.execute(
            "select (select count(*) from ledger_entries) + (select count(*) from ledger_line_items)"
        ).fetchone()
    return Counters(
        nats_in=int(varz["in_msgs"]),
        nats_out=int(varz["out_msgs"]),
        js_writes=js_writes,
        leases=round(by_subject.get(_LEASE_SUBJECT, 0.0)),
        billing_rpcs=round(sum(by_subject.values())),
        ledger_rows=int(rows),
    )


def _tenants(base_url: str, admin_token: str) -> dict[str, str]:
    """``{"plain": key, "governed": key}``: two projects made through the admin API."""
    operator = {"Authorization": f"Bearer {admin_token}"}
    keys = {}
    with httpx.Client(base_url=base_url, timeout=30.0, headers=operator) as http:
        for name in ("plain", "governed"):
            made = http.post("/admin/projects", json={"name": f"scaleout-{name}"})
            if made.status_code != 201:
                raise TargetError(f"project {name}: {made.status_code} {made.text[:300]}")
            project = made.json()["id"]
            key = http.post(
                f"/admin/projects/{project}/keys", json={"name": "k", "scopes": ["chat"]}
            )
            if key.status_code != 201:
                raise TargetError(f"key {name}: {key.status_code} {key.text[:300]}")
            keys[name] = key.json()["key"]
            if name == "governed":
                for reply in (
                    http.put(
                        f"/admin/projects/{project}/budget",
                        json={"limit": "1000000.00", "period": "monthly"},
                    ),
                    http.patch(
                        f"/admin/projects/{project}",
                        json={"rate_limits": {"per_minute": 100_000_000}},
                    ),
                ):
                    if reply.status_code != 200:
                        raise TargetError(
                            f"governing {name}: {reply.status_code} {reply.text[:300]}"
                        )
    return keys  # fmt: skip


def _add_pair(stack: Stack, index: int) -> str:
    """Start router ``index`` and an edge that uses it; the edge's origin once it is ready."""
    router, router_metrics, edge = free_ports(3)
    stack.spawn_replica(
        "router",
        str(index),
        {"ROUTER_PORT": str(router), "ROUTER_METRICS_PORT": str(router_metrics)},
    )
    child = stack.spawn_replica(
        "edge",
        str(index),
        {"GATEWAY_PORT": str(edge), "GATEWAY_ROUTER_ADDR": f"127.0.0.1:{router}"},
    )
    origin = f"http://127.0.0.1:{edge}"
    wait_until_ok(f"{origin}/readyz", child, timeout_s=120, what=f"edge-{index}")
    return origin


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    tenant: str
    replicas: int
    runs: list[WrkResult]
    cpu_s: Mapping[str, float]
    """CPU seconds by service (replicas summed), load and settling."""
    delta: Counters

    @property
    def requests(self) -> int:
        return sum(run.requests for run in self.runs)

    @property
    def rps(self) -> float:
        return sum(run.rps for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def per_request(self, value: float) -> float:
        return value / self.requests if self.requests else 0.0


def _measure(
    switchyard: Switchyard,
    origins: Sequence[str],
    *,
    tenant: str,
    key: str,
    opts: argparse.Namespace,
    layout: BenchLayout,
    http: httpx.Client,
) -> Row:
    stack = switchyard.stack
    body = chat_body("bench-chat", stream=False)
    share = max(1, opts.connections // len(origins))
    before = _counters(http, stack)
    with (
        TreeMonitor(switchyard.process_roots()) as monitor,
        ThreadPoolExecutor(len(origins)) as pool,
    ):
        futures = [
            pool.submit(
                run_wrk,
                f"{origin}/v1/chat/completions",
                body=body,
                api_key=key,
                connections=share,
                duration_s=opts.seconds,
                script=layout.input("wrk/post.lua"),
            )
            for origin in origins
        ]
        runs = [future.result() for future in futures]
        monitor.settle(max_s=15.0)
    delta = _counters(http, stack).minus(before)
    cpu: dict[str, float] = {}
    for name, seconds in monitor.usage.cpu_s.items():
        service = name.split("-", 1)[0]
        cpu[service] = cpu.get(service, 0.0) + seconds
    return Row(tenant, len(origins), runs, cpu, delta)  # fmt: skip


def _render(
    rows: Sequence[Row],
    opts: argparse.Namespace,
    argv: Sequence[str],
    load: tuple[float, float, float],
) -> str:
    services = ["edge", "router", "nats", "billing", "sessions", "rag"]
    head = (
        "| tenant | edge+router replicas | req/s | errors | CPU ms/req (all) | "
        + " | ".join(f"{s} ms/req" for s in services)
        + " | NATS msgs in/req | NATS msgs out/req | JetStream writes/req | lease RPCs/req | billing RPCs/req | ledger rows/req |"
    )
    lines = [
        f"Run: `python -m devtools.bench.scaleout {' '.join(argv)}`: {opts.connections} connections "
        f"split over the edges, unary chat, {opts.seconds:g} s per row, one run.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for row in rows:
        total = sum(row.cpu_s.values())
        lines.append(
            f"| {row.tenant} | {row.replicas} | {row.rps:,.0f} | {row.errors} "
            f"| {1000 * row.per_request(total):.2f} | "
            + " | ".join(f"{1000 * row.per_request(row.cpu_s.get(s, 0.0)):.2f}" for s in services)
            + f" | {row.per_request(row.delta.nats_in):.2f} | {row.per_request(row.delta.nats_out):.2f}"
            f" | {row.per_request(row.delta.js_writes):.2f}"
            f" | {row.per_request(row.delta.leases):.4f} | {row.per_request(row.delta.billing_rpcs):.4f}"
            f" | {row.per_request(row.delta.ledger_rows):.2f} |"
        )
    machine = [
        line
        for line in describe_machine(litellm_version=None, load_before=load)
        if not line.startswith("LiteLLM")
    ]
    machine.append("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return "\n".join([*lines, "", *(f"- {line}" for line in machine)])


def _run(opts: argparse.Namespace, argv: Sequence[str]) -> str:
    layout = BenchLayout(work=REPO_ROOT / "bench" / ".work" / "scaleout")
    load = os.getloadavg()
    rows: list[Row] = []
    with (
        Nginx(layout) as nginx,
        Switchyard(
            layout, upstream_url=nginx.base_url, api_key="sk-bench-" + secrets.token_urlsafe(16)
        ) as switchyard,
        httpx.Client(timeout=10.0) as http,
    ):
        keys = _tenants(switchyard.stack.base_url, switchyard.stack.config.admin_token or "")
        origins = [switchyard.stack.base_url]
        for tenant, replicas in ROWS:
            while len(origins) < replicas:
                origins.append(_add_pair(switchyard.stack, len(origins) + 1))
            # A short warm-up per row: the new edges' caches and gRPC channels, the tenant's lease.
            run_wrk(
                f"{origins[0]}/v1/chat/completions",
                body=chat_body("bench-chat", stream=False),
                api_key=keys[tenant],
                connections=4,
                duration_s=2,
                script=layout.input("wrk/post.lua"),
            )
            row = _measure(
                switchyard,
                origins,
                tenant=tenant,
                key=keys[tenant],
                opts=opts,
                layout=layout,
                http=http,
            )
            _log.info("%s x%d: %.0f req/s, %d errors", tenant, replicas, row.rps, row.errors)
            rows.append(row)
    return _render(rows, opts, argv, load)  # fmt: skip


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rows, print the table (and write it with ``--write``); 2 if the run failed,
    130 if interrupted (SIGINT or SIGTERM: every process started is stopped either way)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.scaleout", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="load per row (20)")
    parser.add_argument(
        "--connections", type=int, default=32, help="in all, split over the edges (32)"
    )
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    opts = parser.parse_args(args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = _run(opts, args)
    except KeyboardInterrupt:
        _log.error("interrupted; every process the run started has been stopped")
        return 130
    except (TargetError, RuntimeError, httpx.HTTPError) as exc:
        _log.error("%s", exc)
        return 2
    print(report)
    if opts.write:
        write_section(opts.doc, report, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
