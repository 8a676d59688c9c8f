"""Medians over rounds, the tables of docs/benchmarks.md, and the targets of issue 7.

Per target and scenario (``summarize``): requests/s, p50, p99 and CPU per
request are medians over rounds; errors are summed over rounds; peak resident
memory is the largest seen in any round. The report is Markdown, printed as is
and written into docs/benchmarks.md between ``BEGIN``/``END`` markers (anything
outside them is left alone, so the prose around the figures survives reruns).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .hops import Hops, render_hops
from .load import Scenario, WrkResult
from .procstats import TreeUsage

__all__ = ["BEGIN", "END", "Summary", "render_report", "summarize", "write_section"]

BEGIN = "<!-- BEGIN make bench: generated, do not edit by hand -->"
END = "<!-- END make bench -->"
_MIB = 1 << 20
#: Row order; targets missing from a run are skipped.
TARGETS = ("direct", "litellm", "switchyard")


@dataclass(frozen=True)
class Summary:
    """One target under one scenario, over all its rounds."""

    rounds: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float
    cpu_ms_by_process: Mapping[str, float]
    peak_rss: int
    peak_rss_by_process: Mapping[str, int]
    busy_after_s: float


def summarize(rounds: Sequence[tuple[WrkResult, TreeUsage]]) -> Summary:
    """Medians (rates, latencies, CPU), sums (errors) and maxima (memory) over ``rounds``."""
    if not rounds:
        raise ValueError("no rounds to summarize")

    def median(value: Callable[[WrkResult, TreeUsage], float]) -> float:
        return statistics.median(value(load, usage) for load, usage in rounds)

    def per_request(seconds: float, load: WrkResult) -> float:
        return 1000 * seconds / max(load.requests, 1)

    names = list(rounds[0][1].cpu_s)
    return Summary(
        rounds=len(rounds),
        requests=sum(load.requests for load, _ in rounds),
        rps=median(lambda load, _: load.rps),
        p50_ms=median(lambda load, _: load.p50_ms),
        p99_ms=median(lambda load, _: load.p99_ms),
        errors=sum(load.errors for load, _ in rounds),
        cpu_ms_per_request=median(lambda load, usage: per_request(usage.total_cpu_s, load)),
        cpu_ms_by_process={
            name: statistics.median(per_request(usage.cpu_s[name], load) for load, usage in rounds)
            for name in names
        },
        peak_rss=max(usage.peak_rss for _, usage in rounds),
        peak_rss_by_process={
            name: max(usage.peak_rss_by_root[name] for _, usage in rounds) for name in names
        },
        busy_after_s=median(lambda _, usage: usage.settle_s),
    )


def _num(value: float) -> str:
    """Three significant digits or so, never scientific notation."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


Results = Mapping[tuple[str, Scenario], Summary]


def _scenarios(results: Results) -> list[Scenario]:
    return sorted({scenario for _, scenario in results})


def _results_table(results: Results) -> list[str]:
    rows = [
        [
            scenario.label,
            target,
            _num(s.rps),
            _num(s.p50_ms),
            _num(s.p99_ms),
            str(s.errors),
            _num(s.cpu_ms_per_request),
            _num(s.peak_rss / _MIB),
        ]
        for scenario in _scenarios(results)
        for target in TARGETS
        if (s := results.get((target, scenario)))
    ]
    header = [
        "scenario",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms/req",
        "peak RSS MiB",
    ]
    return _table(header, rows)


def _ratio_table(results: Results) -> list[str]:
    rows = []
    for scenario in _scenarios(results):
        sy = results.get(("switchyard", scenario))
        if sy is None:
            continue
        ll, direct = results.get(("litellm", scenario)), results.get(("direct", scenario))
        rows.append(
            [
                scenario.label,
                _ratio(sy.rps, ll.rps) if ll else "-",
                _ratio(sy.p99_ms, ll.p99_ms) if ll else "-",
                _ratio(sy.cpu_ms_per_request, ll.cpu_ms_per_request) if ll else "-",
                _ratio(sy.peak_rss, ll.peak_rss) if ll else "-",
                _ratio(sy.rps, direct.rps) if direct else "-",
                _ratio(sy.p50_ms, direct.p50_ms) if direct else "-",
                _ratio(sy.p99_ms, direct.p99_ms) if direct else "-",
            ]
        )
    header = [
        "scenario", "req/s SY/LiteLLM", "p99 SY/LiteLLM", "CPU/req SY/LiteLLM",
        "RSS SY/LiteLLM", "req/s SY/direct", "p50 SY/direct", "p99 SY/direct",
    ]  # fmt: skip
    return _table(header, rows) if rows else []


def _added_latency(results: Results) -> list[str]:
    rows = []
    for scenario in _scenarios(results):
        direct = results.get(("direct", scenario))
        if scenario.connections != 1 or direct is None:
            continue
        added = [
            _num(s.p50_ms - direct.p50_ms) if (s := results.get((target, scenario))) else "-"
            for target in ("litellm", "switchyard")
        ]
        rows.append([scenario.label, *added])
    return _table(["scenario", "LiteLLM", "Switchyard"], rows) if rows else []


def _breakdown(results: Results) -> list[str]:
    rows = []
    names: list[str] = []
    for scenario in _scenarios(results):
        sy = results.get(("switchyard", scenario))
        if sy is None:
            continue
        names = names or list(sy.cpu_ms_by_process)
        rows.append(
            [
                scenario.label,
                *(_num(sy.cpu_ms_by_process[name]) for name in names),
                _num(sy.cpu_ms_per_request),
                f"{sy.busy_after_s:.1f}",
            ]
        )
        peak = sy.peak_rss_by_process
        rows.append(
            [
                "peak RSS MiB",
                *(_num(peak[name] / _MIB) for name in names),
                _num(sy.peak_rss / _MIB),
                "",
            ]
        )
    header = ["scenario: CPU ms/req", *names, "total", "busy after load s"]
    return _table(header, rows) if rows else []


def _targets(results: Results) -> list[str]:
    """Issue 7's targets, each with the measured figure and whether it is met."""
    rows: list[list[str]] = []

    def check(what: str, measured: str, met: bool) -> None:
        rows.append([what, measured, "met" if met else "NOT met"])

    for scenario in _scenarios(results):
        sy, ll = results.get(("switchyard", scenario)), results.get(("litellm", scenario))
        direct = results.get(("direct", scenario))
        if sy is None:
            continue
        if ll and scenario.connections > 1:
            label = scenario.label
            check(f"{label}: req/s >= 10x LiteLLM", _ratio(sy.rps, ll.rps), sy.rps >= 10 * ll.rps)
            check(
                f"{label}: CPU/req <= LiteLLM/10",
                _ratio(sy.cpu_ms_per_request, ll.cpu_ms_per_request),
                10 * sy.cpu_ms_per_request <= ll.cpu_ms_per_request,
            )
            check(
                f"{label}: p99 <= LiteLLM/10",
                _ratio(sy.p99_ms, ll.p99_ms),
                10 * sy.p99_ms <= ll.p99_ms,
            )
        if direct and scenario.connections == 1:
            added = sy.p50_ms - direct.p50_ms
            check(f"{scenario.label}: added p50 <= 1.5 ms", f"{added:.2f} ms", added <= 1.5)
    sy_rss = max((s.peak_rss for (t, _), s in results.items() if t == "switchyard"), default=0)
    ll_rss = max((s.peak_rss for (t, _), s in results.items() if t == "litellm"), default=0)
    if sy_rss and ll_rss:
        check("all Switchyard processes: RSS < LiteLLM's", _ratio(sy_rss, ll_rss), sy_rss < ll_rss)
    errors = sum(s.errors for s in results.values())
    check("zero errors in every run", str(errors), errors == 0)
    return _table(["target (issue 7)", "measured", ""], rows)


def render_report(
    results: Results, *, machine: Sequence[str], settings: str, hops: Sequence[Hops] = ()
) -> str:
    """The Markdown section: figures, ratios, targets, per-hop timings, Switchyard's
    breakdown per process, the machine."""
    lines = [f"Run: {settings}", "", *_results_table(results)]
    for title, body in (
        (
            "Switchyard relative to LiteLLM and to the upstream alone (below 1x is better for p50, p99, CPU and RSS):",
            _ratio_table(results),
        ),
        ("Added p50 over direct at 1 connection, ms:", _added_latency(results)),
        ("Targets:", _targets(results)),
        (
            "Where Switchyard's added time goes at one connection (`Server-Timing` of each "
            "answer; medians, ms; `devtools/bench/hops.py`):",
            render_hops(hops),
        ),
        (
            "Switchyard per process (CPU ms per request, medians; peak RSS; how long the trees stayed busy after the load stopped, i.e. billing catching up):",
            _breakdown(results),
        ),
    ):
        if body:
            lines += [title, "", *body]
    lines += ["Machine:", "", *(f"- {line}" for line in machine), ""]
    return "\n".join(lines)


def write_section(path: Path, section: str, *, begin: str = BEGIN, end: str = END) -> None:
    """Put ``section`` between the markers ``begin`` and ``end`` of ``path`` (appending the
    markers if absent); the defaults are ``make bench``'s, ``make soak`` passes its own."""
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
