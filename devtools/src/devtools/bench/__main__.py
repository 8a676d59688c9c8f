"""``python -m devtools.bench`` (``make bench``): run the benchmark, print and record the figures.

Order: nginx starts and stays up for the whole run; then each selected target
in turn (direct, litellm, switchyard) is started, checked (``check_target``),
and for each scenario warmed up, then loaded for ``--rounds`` rounds of
``--duration`` seconds, each round measured by a ``TreeMonitor``; then stopped.
``--profile`` adds, for Switchyard, one extra round per scenario at the largest
connection count with py-spy attached to the services named by
``--profile-services``; its summary is printed and the raw stacks are kept
under ``bench/.work/profiles``. ``--scenarios streams2k`` runs the many-streams
scenario (``devtools.bench.streams``, its own paced upstream; the targets of
``--only``) first, and only prints its table.

The report goes to stdout and, when all three targets ran and ``--no-write``
is not given, into docs/benchmarks.md between its markers. Ctrl-C or SIGTERM
stops every process the run started. Exit status: 0 when every run had zero
errors, 1 when some had errors, 2 when a target could not run, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from devtools.stack import StackError

from .hops import Hops, probe_hops
from .layout import REPO_ROOT, BenchLayout
from .litellm import LiteLLM, ensure_litellm, litellm_version
from .load import LoadError, Scenario, WrkResult, chat_body, run_wrk
from .machine import describe_machine
from .procstats import TreeMonitor, TreeUsage, wait_idle
from .profile import Recording, ensure_py_spy, read_profile
from .report import TARGETS, Summary, render_report, summarize, write_section
from .streams import add_arguments as add_streams_arguments
from .streams import scenario as streams_scenario
from .switchyard import Switchyard
from .target import Target, TargetError, check_target
from .upstream import Nginx

__all__ = ["main"]

_log = logging.getLogger("devtools.bench")
#: Longest wait for a target to finish the work its load left behind (billing's backlog).
_SETTLE_MAX_S = 60.0


def _csv(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = sorted(set(items) - set(allowed))
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return items

    return parse


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench",
        description="The same load against a fake upstream, LiteLLM and Switchyard.",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measured round (10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of unmeasured load first (3)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per scenario (3)")
    parser.add_argument(
        "--connections", type=lambda s: [int(c) for c in s.split(",")], default=[1, 32]
    )
    parser.add_argument(
        "--scenarios", type=_csv(("chat", "stream", "streams2k")), default=["chat", "stream"]
    )
    parser.add_argument("--only", type=_csv(TARGETS), default=list(TARGETS), help="targets to run")
    parser.add_argument("--litellm-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--hop-requests",
        type=int,
        default=300,
        help="sequential requests per scenario for the per-hop timings (300; 0: none)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy Switchyard under load")
    parser.add_argument(
        "--profile-services",
        type=_csv(("edge", "router", "billing", "nats")),
        default=["edge", "router", "billing"],
    )
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    add_streams_arguments(parser)  # --scenarios streams2k
    opts = parser.parse_args(argv)
    if opts.rounds < 1 or opts.duration < 1 or min(opts.connections) < 1:
        parser.error("--rounds, --duration and --connections must be at least 1")
    return opts


class _Runner:
    """Loads one target after another with the same scenarios; collects the summaries."""

    def __init__(self, opts: argparse.Namespace, layout: BenchLayout, api_key: str) -> None:
        self.opts = opts
        self.layout = layout
        self.api_key = api_key
        self.scenarios = [
            Scenario(stream=kind == "stream", connections=c)
            for kind in opts.scenarios
            for c in opts.connections
        ]
        self.results: dict[tuple[str, Scenario], Summary] = {}
        self.requests: dict[str, int] = {}

    def _wrk(self, target: Target, scenario: Scenario, duration_s: float) -> WrkResult:
        result = run_wrk(
            target.url(stream=scenario.stream),
            body=chat_body(target.model(stream=scenario.stream), stream=scenario.stream),
            api_key=self.api_key,
            connections=scenario.connections,
            duration_s=duration_s,
            script=self.layout.input("wrk/post.lua"),
        )
        self.requests[target.name] = self.requests.get(target.name, 0) + result.requests
        return result

    def measure(self, target: Target) -> None:
        """Check ``target``, then warm-up and rounds for every scenario."""
        check_target(target, api_key=self.api_key, layout=self.layout)
        self.requests[target.name] = self.requests.get(target.name, 0) + 2
        roots = target.process_roots()
        for scenario in self.scenarios:
            _log.info("%s %s: warm-up %.0f s", target.name, scenario.label, self.opts.warmup)
            self._wrk(target, scenario, self.opts.warmup)
            wait_idle(roots, max_s=_SETTLE_MAX_S)
            rounds: list[tuple[WrkResult, TreeUsage]] = []
            for number in range(1, self.opts.rounds + 1):
                with TreeMonitor(roots) as monitor:
                    result = self._wrk(target, scenario, self.opts.duration)
                    monitor.settle(max_s=_SETTLE_MAX_S)
                usage = monitor.usage
                rounds.append((result, usage))
                _log.info(
                    "%s %s round %d: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors, "
                    "%.2f CPU ms/req, %.0f MiB, busy %.1f s after",
                    target.name, scenario.label, number, result.rps, result.p50_ms,
                    result.p99_ms, result.errors, 1000 * usage.total_cpu_s / max(result.requests, 1),
                    usage.peak_rss / (1 << 20), usage.settle_s,
                )  # fmt: skip
            self.results[(target.name, scenario)] = summarize(rounds)

    def profile(self, target: Switchyard) -> str:
        """One py-spy round per scenario at the largest connection count; the summaries."""
        py_spy = ensure_py_spy(self.layout)
        roots = target.process_roots()
        pids = {name: roots[name] for name in self.opts.profile_services}
        top = max(self.opts.connections)
        duration = max(3, int(self.opts.duration))
        parts = []
        for scenario in (s for s in self.scenarios if s.connections == top):
            out_dir = self.layout.work / "profiles" / scenario.label.replace(" ", "-")
            _log.info("profiling %s under %s for %d s", ", ".join(pids), scenario.label, duration)
            with Recording(py_spy, pids, duration_s=duration, out_dir=out_dir) as recording:
                result = self._wrk(target, scenario, duration + 1)
            wait_idle(roots, max_s=_SETTLE_MAX_S)
            parts.append(f"## {scenario.label} ({result.rps:.0f} req/s while sampled; {out_dir})")
            parts += [read_profile(name, path).render() for name, path in recording.outputs.items()]
        return "\n".join(parts)


def _preflight(opts: argparse.Namespace) -> None:
    missing = [
        tool
        for tool in ("wrk", "nginx")
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())
    ]
    if missing:
        raise TargetError(f"{' and '.join(missing)} not found: run `make bench-deps`")


def _run(opts: argparse.Namespace) -> int:
    streams_ok = True
    if "streams2k" in opts.scenarios:
        results, table = streams_scenario(opts)
        sys.stdout.write(table + "\n")
        streams_ok = not any(r.errors for r in results)
        opts.scenarios = [kind for kind in opts.scenarios if kind != "streams2k"]
        if not opts.scenarios:
            return 0 if streams_ok else 1
    layout = BenchLayout()
    _preflight(opts)
    load_before = os.getloadavg()
    runner = _Runner(opts, layout, api_key="sk-bench-" + secrets.token_urlsafe(16))
    version: str | None = None
    ledger_line = ""
    profiles = ""
    hops: list[Hops] = []
    with Nginx(layout) as nginx:
        if "direct" in opts.only:
            runner.measure(nginx)
        if "litellm" in opts.only:
            _log.info("installing LiteLLM into %s (skipped when up to date)", layout.work)
            venv = ensure_litellm(layout)
            version = litellm_version(venv)
            _log.info("starting LiteLLM %s with %d workers", version, opts.litellm_workers)
            with LiteLLM(
                layout,
                venv=venv,
                upstream_url=nginx.base_url,
                api_key=runner.api_key,
                workers=opts.litellm_workers,
            ) as litellm:
                runner.measure(litellm)
        if "switchyard" in opts.only:
            _log.info("starting Switchyard (NATS and five services)")
            with Switchyard(
                layout, upstream_url=nginx.base_url, api_key=runner.api_key
            ) as switchyard:
                runner.measure(switchyard)
                if opts.hop_requests > 0:
                    _log.info("per-hop timings: %d sequential requests each", opts.hop_requests)
                    hops = [
                        probe_hops(
                            switchyard,
                            nginx,
                            api_key=runner.api_key,
                            stream=kind == "stream",
                            requests=opts.hop_requests,
                        )
                        for kind in opts.scenarios
                    ]
                    runner.requests["switchyard"] += len(hops) * (opts.hop_requests + 20)
                if opts.profile:
                    profiles = runner.profile(switchyard)
                wait_idle(switchyard.process_roots(), max_s=_SETTLE_MAX_S)
                ledger_line = (
                    f" Billing wrote {switchyard.ledger_entries():,} ledger entries for the "
                    f"{runner.requests['switchyard']:,} requests wrk and the checks completed "
                    "(wrk does not count the few in flight when it stops)."
                )
    machine = describe_machine(litellm_version=version, load_before=load_before)
    settings = (
        f"`python -m devtools.bench --duration {opts.duration:g} --warmup {opts.warmup:g} "
        f"--rounds {opts.rounds} --connections {','.join(map(str, opts.connections))} "
        f"--scenarios {','.join(opts.scenarios)} --only {','.join(opts.only)} "
        f"--litellm-workers {opts.litellm_workers}`; medians of {opts.rounds} round(s).{ledger_line}"
    )
    report = render_report(runner.results, machine=machine, settings=settings, hops=hops)
    sys.stdout.write(report + "\n")
    if profiles:
        (layout.scratch("profiles") / "summary.txt").write_text(profiles + "\n")
        sys.stdout.write("\nProfiles (py-spy, share of samples):\n" + profiles + "\n")
    if opts.no_write:
        _log.info("not written (--no-write)")
    elif set(opts.only) != set(TARGETS):
        _log.info(
            "not written to %s: only a full run (all three targets) replaces its figures", opts.doc
        )
    else:
        write_section(opts.doc, report)
        _log.info("written to %s", opts.doc)
    return 0 if streams_ok and all(s.errors == 0 for s in runner.results.values()) else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring for the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls and checks
    opts = _parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(opts)
    except KeyboardInterrupt:
        _log.error("interrupted; every process the run started has been stopped")
        return 130
    except (TargetError, LoadError, StackError) as exc:
        _log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
