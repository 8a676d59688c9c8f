"""The benchmark harness (devtools.bench): parsing, statistics, report, process accounting,
and the nginx upstream under a one-second wrk run when nginx and wrk are installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.bench.hops import Hops, parse_timing, render_hops
from devtools.bench.layout import BenchLayout, render
from devtools.bench.load import LoadError, Scenario, WrkResult, chat_body, parse_wrk_output, run_wrk
from devtools.bench.procstats import TreeMonitor, TreeUsage, process_tree
from devtools.bench.profile import read_profile
from devtools.bench.report import BEGIN, END, render_report, summarize, write_section
from devtools.bench.target import check_target
from devtools.bench.upstream import Nginx, nginx_literal

pytestmark = pytest.mark.timeout(60)

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1/v1/chat/completions
  1 threads and 1 connections
  Latency Distribution
     50%  26.00us
  1000 requests in 1.00s, 1.00MB read
  Non-2xx or 3xx responses: 3
BENCH_RESULT {"requests":1000,"duration_us":2000000,"bytes":1,"errors":{"connect":0,"read":1,"write":0,"status":3,"timeout":0},"latency_us":{"p50":1500,"p90":2000,"p99":9000,"max":12000,"mean":1600.0}}
"""


def test_wrk_output_gives_rate_latency_and_every_error() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests == 1000
    assert result.rps == 500
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (1.5, 2.0, 9.0)
    assert result.errors == 4  # 3 non-2xx answers + 1 read error


def test_wrk_output_must_agree_with_the_non_2xx_line() -> None:
    with pytest.raises(LoadError, match="non-2xx"):
        parse_wrk_output(WRK_OUTPUT.replace("responses: 3", "responses: 2"))
    with pytest.raises(LoadError, match="BENCH_RESULT"):
        parse_wrk_output("Running 1s test\n")


def test_render_fills_every_placeholder_or_refuses() -> None:
    assert render("a @X@ b @Y_Z@", {"X": "1", "Y_Z": "2"}) == "a 1 b 2"
    with pytest.raises(KeyError, match="@Y@"):
        render("@X@ @Y@", {"X": "1"})


def test_nginx_literal_escapes_what_a_single_quoted_string_cannot_hold() -> None:
    assert nginx_literal("it's\\\ndata: x\n\n") == "it\\'s\\\\\\ndata: x\\n\\n"


def _usage(cpu_s: float, rss: int) -> TreeUsage:
    return TreeUsage(
        cpu_s={"edge": cpu_s / 2, "router": cpu_s / 2},
        peak_rss=rss,
        peak_rss_by_root={"edge": rss // 2, "router": rss // 2},
        settle_s=0.0,
    )


def _result(requests: int, p50: float, errors: int = 0) -> WrkResult:
    return WrkResult(requests, 10.0, errors, p50, p50 * 2, p50 * 4)


def test_summary_takes_medians_sums_errors_and_keeps_the_peak() -> None:
    rounds = [
        (_result(1000, 1.0), _usage(1.0, 100)),
        (_result(3000, 3.0, errors=2), _usage(3.0, 300)),
        (_result(2000, 2.0), _usage(4.0, 200)),
    ]
    summary = summarize(rounds)
    assert summary.rps == 200
    assert summary.p50_ms == 2.0
    assert summary.p99_ms == 8.0
    assert summary.errors == 2
    assert summary.cpu_ms_per_request == 1.0  # median of 1.0, 1.0 and 2.0 ms
    assert summary.cpu_ms_by_process == {"edge": 0.5, "router": 0.5}
    assert summary.peak_rss == 300


def test_report_has_ratios_targets_and_replaces_only_its_section(tmp_path: Path) -> None:
    chat = Scenario(stream=False, connections=32)
    one = Scenario(stream=False, connections=1)
    results = {
        ("direct", one): summarize([(_result(50_000, 0.03), _usage(0.5, 10 << 20))]),
        ("litellm", one): summarize([(_result(100, 11.0), _usage(1.5, 1000 << 20))]),
        ("switchyard", one): summarize([(_result(1000, 1.0), _usage(1.0, 400 << 20))]),
        ("litellm", chat): summarize([(_result(1000, 200.0), _usage(16.0, 1000 << 20))]),
        ("switchyard", chat): summarize([(_result(12_000, 20.0), _usage(12.0, 400 << 20))]),
    }
    report = render_report(results, machine=["CPU: test"], settings="test run")
    assert "| chat c=32 | switchyard | 1,200 | 20.0 | 80.0 | 0 | 1.00 | 400 |" in report
    assert "| chat c=32: req/s >= 10x LiteLLM | 12.00x | met |" in report
    assert "| chat c=32: CPU/req <= LiteLLM/10 | 0.06x | met |" in report
    assert "| chat c=1: added p50 <= 1.5 ms | 0.97 ms | met |" in report
    assert "| all Switchyard processes: RSS < LiteLLM's | 0.40x | met |" in report

    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose\n\n{BEGIN}\nold figures\n{END}\n\nafter\n")
    write_section(doc, report)
    text = doc.read_text()
    assert "old figures" not in text
    assert text.startswith("# Benchmarks\n\nprose\n\n" + BEGIN)
    assert text.endswith(END + "\n\nafter\n")


def test_profile_ranks_leaf_frames_and_our_steps(tmp_path: Path) -> None:
    raw = tmp_path / "edge.txt"
    raw.write_text(
        "main (edge/__main__.py:1);Runner.run (asyncio/runners.py:118);"
        "Proxy.forward (edge/api/proxy.py:10);UnaryUnaryCall._invoke (grpc/aio/_call.py:5) 3\n"
        "main (edge/__main__.py:1);Runner.run (asyncio/runners.py:118);"
        "Proxy.read (edge/api/proxy.py:20) 1\n"
    )
    profile = read_profile("edge", raw)
    assert profile.samples == 4
    assert profile.by_function[0] == ("UnaryUnaryCall._invoke (grpc/aio/_call.py)", 3)
    assert profile.by_package == [("grpc", 3), ("edge", 1)]
    assert dict(profile.ours) == {
        "Proxy.forward (edge/api/proxy.py)": 3,
        "Proxy.read (edge/api/proxy.py)": 1,
    }
    assert "75.0%  grpc" in profile.render()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tree_monitor_charges_cpu_and_memory_of_descendants() -> None:
    spin = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end: pass"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"
    parent = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(tree := process_tree({"job": parent.pid})) < 2:  # until the grandchild runs
            assert time.monotonic() < deadline, "the grandchild never started"
            time.sleep(0.02)
        assert set(tree.values()) == {"job"}
        (grandchild,) = (pid for pid in tree if pid != parent.pid)
        with TreeMonitor({"job": parent.pid}, sample_interval_s=0.05) as monitor:
            # The measured window: the grandchild spins throughout, until it has had 0.3 s of
            # CPU since the window opened (a busy machine gives it less than wall time).
            start, deadline = _cpu_s(grandchild), time.monotonic() + 4.5
            while _cpu_s(grandchild) - start < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the grandchild too
        parent.wait()
    usage = monitor.usage
    assert usage.peak_rss > 1 << 20
    assert usage.peak_rss_by_root["job"] == usage.peak_rss
    assert usage.cpu_s["job"] > 0.1


@pytest.mark.skipif(
    not (shutil.which("wrk") and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())),
    reason="nginx and wrk come from `make bench-deps`",
)
def test_the_nginx_upstream_serves_both_bodies_under_wrk(tmp_path: Path) -> None:
    layout = BenchLayout(work=tmp_path)
    with Nginx(layout) as nginx:
        check_target(nginx, api_key="sk-test", layout=layout)
        result = run_wrk(
            nginx.url(stream=True),
            body=chat_body(nginx.model(stream=True), stream=True),
            api_key="sk-test",
            connections=1,
            duration_s=1,
            script=layout.input("wrk/post.lua"),
        )
        pid = nginx.process_roots()["nginx"]
    assert result.requests > 100
    assert result.errors == 0
    assert not Path(f"/proc/{pid}").exists()


def test_per_hop_timings_parse_the_header_and_render_what_is_left_over() -> None:
    header = "edge;dur=0.800, router;dur=1.100, publish;dur=0.300, upstream;dur=0.500"
    parts = parse_timing(header)
    assert parts == {"edge": 0.8, "router": 1.1, "publish": 0.3, "upstream": 0.5}
    hops = Hops(stream=False, requests=300, client_ms=3.5, direct_ms=0.2, parts=parts)
    assert hops.rest_ms == pytest.approx(0.8)
    (row,) = [line for line in render_hops([hops]) if line.startswith("| chat")]
    assert (
        row == "| chat c=1 (300 requests) | 3.50 | 0.20 | 3.30 | 0.80 | 1.10 | 0.30 | 0.50 | 0.80 |"
    )
    assert render_hops([]) == []
