"""``python -m devtools.bench.soak`` (``make soak``): a long mixed load through the whole stack,
with flat memory and an exact ledger as the pass criteria (issue 7, point 4).

Order:

    nginx (the bench's fixed upstream) and Switchyard (``switchyard.Switchyard``: NATS,
        edge, router, billing, sessions, rag; SQLite under ``bench/.work/soak``)
    check_target: one chat and one stream answer with the upstream's text
    mix: the wave-2 tenants made through the admin API (``soak_mix.prepare_mix``: an
        endpoint with sessions, a gateway with retrieval over a small collection, a channel)
    load: one wrk (``soak_load.SoakWrk``) cycling through the mix (``soak_mix.CYCLE``) over
        ``--connections``, each request with its own X-Request-Id, until ``--requests``
        answers or ``--max-minutes``, whichever comes first; every ``--sample-s``
        seconds the VmRSS of each service's process tree and the USAGE stream's
        event count are recorded
    drain: wait (at most ``--drain-minutes``, or until billing makes no progress for
        two minutes) until billing's consumer has nothing pending and no new events come
    verdicts: memory growth after warm-up per service (``soak_report.memory_growth``),
        the ledger against wrk's and the stream's counts (``soak_report.check_ledger``),
        zero errors

The report is printed and, unless ``--no-write``, written into docs/benchmarks.md
between the soak's own markers (a run shorter than the issue's million says so
in its first line). Exit status: 0 when every verdict passes, 1 when one fails,
2 when the run could not be made, 130 when interrupted (every process started
is stopped in every case).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from devtools.stack import StackError

from .layout import REPO_ROOT, BenchLayout
from .load import LoadError
from .machine import describe_machine
from .procstats import process_tree, rss_by_root
from .report import write_section
from .soak_load import SoakResult, SoakWrk, ledger_counts, read_usage_stream
from .soak_mix import CYCLE, SESSION_TURNS, prepare_mix
from .soak_report import (
    SOAK_BEGIN,
    SOAK_END,
    Growth,
    Sample,
    StreamCounts,
    Verdict,
    check_ledger,
    failures,
    memory_growth,
    render_soak,
    warmup_end,
)
from .switchyard import Switchyard
from .target import TargetError, check_target
from .upstream import Nginx

__all__ = ["main"]

_log = logging.getLogger("devtools.bench.soak")
#: The soak issue 7 asks for; shorter runs are labelled as such.
_ISSUE_REQUESTS = 1_000_000
#: How often the load loop checks wrk's bounds and the stack's children.
_TICK_S = 0.5
_PROGRESS_S = 30.0
#: The drain gives up when billing acknowledges nothing new for this long.
_DRAIN_STALL_S = 120.0


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench.soak",
        description="A long mixed load through the whole Switchyard stack: flat memory, exact ledger.",
    )
    add = parser.add_argument
    add("--requests", type=int, default=_ISSUE_REQUESTS, help="answers to wait for (1,000,000)")
    add("--max-minutes", type=float, default=180.0, help="time bound of the load (180)")
    add("--connections", type=int, default=32, help="steady concurrency (32)")
    add("--timeout-s", type=float, default=30.0, help="a slower answer is an error (30)")
    add("--sample-s", type=float, default=5.0, help="seconds between RSS samples (5)")
    add("--warmup-share", type=float, default=0.1, help="share of requests in warm-up (0.1)")
    add("--warmup-s", type=float, default=60.0, help="minimum seconds of warm-up (60)")
    add(
        "--window",
        type=int,
        default=12,
        help=(
            "least samples per median, after warm-up and at the end (12); a longer run "
            "takes a tenth of its post-warm-up samples, so nats-server's GC sawtooth "
            "averages out"
        ),
    )
    add("--drain-minutes", type=float, default=60.0, help="longest wait for billing (60)")
    add("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    add("--no-write", action="store_true", help="print only; leave the doc alone")
    opts = parser.parse_args(argv)
    if min(opts.requests, opts.connections, opts.window) < 1 or opts.max_minutes <= 0:
        parser.error("--requests, --connections, --window and --max-minutes must be positive")
    if not 0 <= opts.warmup_share < 1:
        parser.error("--warmup-share must be in [0, 1)")
    return opts


@dataclass(frozen=True)
class _Outcome:
    """Everything the report needs, collected while the stack runs."""

    load: SoakResult
    bound: str
    samples: list[Sample]
    after_drain: Mapping[str, int]
    stream: StreamCounts
    drain_s: float
    ledger: list[Verdict]
    already: int
    """Usage events published before the load (the checks' and the collection's ingest)."""


def _load(
    wrk: SoakWrk,
    switchyard: Switchyard,
    http: httpx.Client,
    monitor: str,
    *,
    already: int,
    opts: argparse.Namespace,
) -> tuple[list[Sample], str]:
    """Sample until wrk reaches a bound; the samples and which bound (``count``/``time``).

    ``already``: usage events published before the load (the correctness checks').
    """
    roots = switchyard.process_roots()
    owner = process_tree(roots)
    started = time.monotonic()
    samples: list[Sample] = []
    next_sample, next_log = started, started + _PROGRESS_S
    while (bound := wrk.poll()) is None:
        if dead := switchyard.stack.dead():
            raise TargetError(f"{dead[0].name} exited during the soak:\n{dead[0].tail()}")
        now = time.monotonic()
        if now >= next_sample:
            stream = read_usage_stream(http, monitor)
            sample = Sample(
                now - started,
                served=stream.published - already,
                billed=stream.billed - already,
                rss=rss_by_root(owner, roots),
            )
            samples.append(sample)
            # A slow tick (the machine is shared) skips samples rather than bunching them.
            next_sample += opts.sample_s
            if next_sample <= now:
                next_sample = now + opts.sample_s
            if now >= next_log:
                next_log = now + _PROGRESS_S
                _log.info(
                    "%.0f s: %s/%s served (%.0f/s), billing %s behind, RSS %.0f MiB",
                    sample.t_s, f"{sample.served:,}", f"{opts.requests:,}", sample.served / sample.t_s,
                    f"{stream.pending:,}", sum(sample.rss.values()) / (1 << 20),
                )  # fmt: skip
        time.sleep(_TICK_S)
    return samples, bound


def _drain(http: httpx.Client, monitor: str, *, max_s: float) -> tuple[StreamCounts, float]:
    """Wait until billing has nothing pending and no new event arrived for a second; or give up
    after ``max_s`` or ``_DRAIN_STALL_S`` without progress. The last counts and the wait."""
    started = time.monotonic()
    progress_at, next_log = started, started + _PROGRESS_S
    previous = read_usage_stream(http, monitor)
    while True:
        time.sleep(1.0)
        counts = read_usage_stream(http, monitor)
        now = time.monotonic()
        if counts.pending == 0 and counts.published == previous.published:
            return counts, now - started
        if counts.billed > previous.billed:
            progress_at = now
        if now - started > max_s or now - progress_at > _DRAIN_STALL_S:
            _log.warning("billing did not drain: %s events pending", f"{counts.pending:,}")
            return counts, now - started
        if now >= next_log:
            next_log = now + _PROGRESS_S
            _log.info("draining: %s events pending", f"{counts.pending:,}")
        previous = counts


def _soak(opts: argparse.Namespace, layout: BenchLayout) -> _Outcome:
    api_key = "sk-bench-" + secrets.token_urlsafe(16)
    id_prefix = f"soak-{secrets.token_hex(4)}"
    with (
        Nginx(layout) as nginx,
        Switchyard(
            layout,
            upstream_url=nginx.base_url,
            api_key=api_key,
            catalog="switchyard/catalog-soak.yaml",
        ) as switchyard,
        httpx.Client(timeout=10.0) as http,
    ):
        check_target(switchyard, api_key=api_key, layout=layout)
        monitor = f"http://127.0.0.1:{switchyard.stack.config.ports.nats_monitor}"
        kinds = prepare_mix(
            switchyard.stack.base_url,
            admin_token=switchyard.stack.config.admin_token or "",
            api_key=api_key,
        )
        _log.info("soak: %s requests, %d connections", f"{opts.requests:,}", opts.connections)
        already = _drain(http, monitor, max_s=60.0)[0].published
        with SoakWrk(
            switchyard.url(stream=False),
            script=layout.input("wrk/soak.lua"),
            kinds=kinds,
            cycle=CYCLE,
            session_turns=SESSION_TURNS,
            id_prefix=id_prefix,
            requests=opts.requests,
            connections=opts.connections,
            max_s=60 * opts.max_minutes,
            log_path=layout.scratch("logs") / "wrk.log",
            timeout_s=opts.timeout_s,
        ) as wrk:
            samples, bound = _load(wrk, switchyard, http, monitor, already=already, opts=opts)
            load = wrk.result()
        _log.info("load stopped by the %s bound; waiting for billing", bound)
        stream, drain_s = _drain(http, monitor, max_s=60 * opts.drain_minutes)
        roots = switchyard.process_roots()
        after_drain = rss_by_root(process_tree(roots), roots)
        ledger = ledger_counts(switchyard.stack.data_dir / "billing.db", id_prefix=id_prefix)
    return _Outcome(
        load=load,
        bound=bound,
        samples=samples,
        after_drain=after_drain,
        stream=stream,
        drain_s=drain_s,
        ledger=check_ledger(load.client, stream, ledger),
        already=already,
    )


def _summary(
    opts: argparse.Namespace, argv: Sequence[str], out: _Outcome, failed: Sequence[str]
) -> list[str]:
    load, client = out.load, out.load.client
    lines = []
    if opts.requests < _ISSUE_REQUESTS:
        lines.append(
            f"**Short run: {opts.requests:,} requests** (the soak of issue 7 is "
            f"{_ISSUE_REQUESTS:,}); it validates the harness, its figures are not the soak's."
        )
    stopped = (
        f"the request count ({client.answered:,} answers >= {opts.requests:,})"
        if out.bound == "count"
        else f"the time bound ({opts.max_minutes:g} min) after {client.answered:,} of {opts.requests:,} answers"
    )
    socket = ", ".join(f"{n} {v}" for n, v in load.socket_errors.items())
    drained = (
        "drained" if out.stream.pending == 0 else f"NOT drained ({out.stream.pending:,} pending)"
    )
    return [
        *lines,
        f"Run: `{shlex.join(['python', '-m', 'devtools.bench.soak', *argv])}`",
        f"Result: **FAIL**: {'; '.join(failed)}" if failed else "Result: **PASS**",
        f"Stopped by {stopped}",
        f"Load: {opts.connections} connections (wrk, {min(opts.connections, 2)} threads) cycling "
        f"{' '.join(CYCLE)} (endpoint: sessions kept {SESSION_TURNS} calls; gateway: retrieval "
        f"over a 4-document collection; channel: its own key and credits); 2xx answers: "
        + ", ".join(f"{count:,} {name}" for name, count in load.ok.items()),
        f"Duration {load.duration_s:,.0f} s, {load.rps:,.0f} req/s, p50 {load.p50_ms:,.1f} ms, "
        f"p99 {load.p99_ms:,.1f} ms, max {load.max_ms:,.0f} ms",
        f"Errors: {load.errors} ({client.answered - client.ok} non-2xx; socket: {socket})",
        f"wrk wrote {client.sent:,} requests and read {client.answered:,} answers: "
        f"{client.unanswered:,} unanswered (in flight when it stopped, or lost to a socket error)",
        f"USAGE stream: {out.stream.published:,} events ({out.already:,} of them before the load: "
        "the checks' and the collection's ingest); "
        f"billing {drained} {out.drain_s:,.0f} s after the load stopped",
        *_billing_pace(out.samples),
    ]


def _billing_pace(samples: Sequence[Sample]) -> list[str]:
    """How billing kept pace during the load (from the last sample), if there was one."""
    if not samples or samples[-1].t_s <= 0:
        return []
    last = samples[-1]
    return [
        f"During the load billing wrote {last.billed / last.t_s:,.0f} entries/s while the gateway "
        f"served {last.served / last.t_s:,.0f} requests/s; "
        f"{last.served - last.billed:,} events waited for billing at the last sample under load"
    ]


def _report(
    opts: argparse.Namespace,
    argv: Sequence[str],
    out: _Outcome,
    load_before: tuple[float, float, float],
) -> tuple[str, bool]:
    start = warmup_end(
        out.samples, requests=opts.requests, share=opts.warmup_share, min_s=opts.warmup_s
    )
    growth: list[Growth] | None = None
    window = opts.window
    if start is not None and len(out.samples) - start >= 2:
        window = max(opts.window, (len(out.samples) - start) // 10)
        growth = memory_growth(out.samples, start=start, window=window)
    warmup = (
        f"warm-up = the first {100 * opts.warmup_share:g} % of the requests and at least "
        f"{opts.warmup_s:g} s"
        + (
            f", ended at {out.samples[start].t_s:,.0f} s after {out.samples[start].served:,} requests"
            if start is not None
            else ""
        )
        + f"; after warm-up and end of load are medians of {window} samples; "
        f"one sample every {opts.sample_s:g} s, {len(out.samples)} in all"
    )
    failed = failures(growth, out.ledger, out.load.errors)
    machine = [
        line
        for line in describe_machine(litellm_version=None, load_before=load_before)
        if not line.startswith("LiteLLM")
    ]
    machine.append("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    section = render_soak(
        summary=_summary(opts, argv, out, failed),
        growth=growth,
        after_drain=out.after_drain,
        warmup=warmup,
        ledger=out.ledger,
        machine=machine,
    )
    return section, not failed


def _write_samples(path: Path, samples: Sequence[Sample]) -> None:
    """The memory curve as CSV (seconds, served, billed, then MiB per service), for plotting."""
    if not samples:
        return
    names = list(samples[0].rss)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["t_s", "served", "billed", *(f"{name}_mib" for name in names)])
        for s in samples:
            rss = (f"{s.rss[name] / (1 << 20):.2f}" for name in names)
            writer.writerow([f"{s.t_s:.1f}", s.served, s.billed, *rss])
    _log.info("samples in %s", path)


def _run(opts: argparse.Namespace, argv: Sequence[str]) -> int:
    missing = [
        t for t in ("wrk", "nginx") if not (shutil.which(t) or Path(f"/usr/sbin/{t}").exists())
    ]
    if missing:
        raise TargetError(f"{' and '.join(missing)} not found: run `make bench-deps`")
    layout = BenchLayout(work=REPO_ROOT / "bench" / ".work" / "soak")
    load_before = os.getloadavg()
    outcome = _soak(opts, layout)
    _write_samples(layout.work / "samples.csv", outcome.samples)
    section, passed = _report(opts, argv, outcome, load_before)
    sys.stdout.write(section + "\n")
    if opts.no_write:
        _log.info("not written (--no-write)")
    else:
        write_section(opts.doc, section, begin=SOAK_BEGIN, end=SOAK_END)
        _log.info("written to %s", opts.doc)
    return 0 if passed else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; see the module docstring for the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # monitor polls
    args = list(sys.argv[1:] if argv is None else argv)
    opts = _parse(args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(opts, args)
    except KeyboardInterrupt:
        _log.error("interrupted; every process the soak started has been stopped")
        return 130
    except (TargetError, LoadError, StackError, httpx.HTTPError) as exc:
        _log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
