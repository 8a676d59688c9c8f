"""The many-streams scenario's pieces against the real paced upstream (a child process)."""

from __future__ import annotations

from devtools.bench.layout import BenchLayout
from devtools.bench.streams import PacedUpstream, render, run_streams


def test_paced_streams_arrive_whole_and_timed_and_short_ones_are_errors() -> None:
    with PacedUpstream(BenchLayout(), chunks=5, interval_ms=5) as upstream:
        url = f"{upstream.base_url}/v1/chat/completions"

        def run(streams: int, chunks: int):  # type: ignore[no-untyped-def]
            return run_streams(
                "direct", url, upstream.process_roots(), api_key="sk-test",
                model="bench-paced", streams=streams, chunks=chunks, ramp_s=0.01, timeout_s=20,
            )  # fmt: skip

        whole = run(3, 5)
        short = run(2, 6)  # expects one chunk more than the upstream sends
    assert (whole.streams, whole.errors, whole.chunks) == (3, 0, 15)
    assert 0 <= whole.late <= 15 and whole.ttfb_p50_ms >= 0
    assert "| direct | 3 | 0 | 15 |" in render([whole], settings="test", load="0")
    assert (short.errors, short.chunks) == (2, 10)
