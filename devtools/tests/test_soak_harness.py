"""The soak harness: warm-up, growth and ledger rules, wrk's and the NATS monitor's output,
the ledger query, and the wrk script's count bound against the bench's nginx."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from devtools.bench.layout import BenchLayout
from devtools.bench.load import LoadError, chat_body
from devtools.bench.report import BEGIN, END, write_section
from devtools.bench.scaleout import parse_billing_requests
from devtools.bench.soak_load import SoakWrk, ledger_counts, parse_jsz, parse_soak_output
from devtools.bench.soak_mix import MixKind
from devtools.bench.soak_report import (
    SOAK_BEGIN,
    SOAK_END,
    ClientCounts,
    Growth,
    LedgerCounts,
    Sample,
    StreamCounts,
    check_ledger,
    failures,
    memory_growth,
    render_soak,
    warmup_end,
)
from devtools.bench.upstream import Nginx

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def _samples(*rows: tuple[float, int, int]) -> list[Sample]:
    """Samples of one service "edge" from (seconds, served, MiB) rows."""
    return [Sample(t, served, billed=0, rss={"edge": mib * MIB}) for t, served, mib in rows]


def test_warmup_ends_once_both_the_request_share_and_the_time_have_passed() -> None:
    samples = _samples((10, 500, 1), (20, 1_200, 1), (70, 1_500, 1), (80, 9_000, 1))
    assert warmup_end(samples, requests=10_000, share=0.1, min_s=60) == 2
    assert warmup_end(samples, requests=10_000, share=0.5, min_s=60) == 3
    assert warmup_end(samples, requests=10_000, share=0.1, min_s=5) == 1
    assert warmup_end(samples, requests=10_000, share=0.95, min_s=60) is None


def test_growth_compares_medians_of_the_first_and_last_windows_after_warmup() -> None:
    # Warm-up samples (index 0-1) are ignored; one spike per window does not move its median.
    samples = _samples(
        (0, 0, 50), (5, 0, 90),
        (10, 0, 100), (15, 0, 130), (20, 0, 100),
        (25, 0, 101), (30, 0, 140),
        (35, 0, 103), (40, 0, 104), (45, 0, 80),
    )  # fmt: skip
    (edge,) = memory_growth(samples, start=2, window=3)
    assert (edge.after_warmup, edge.end, edge.peak) == (100 * MIB, 103 * MIB, 140 * MIB)
    assert edge.growth_pct == pytest.approx(3.0)
    assert edge.passed


def test_growth_windows_never_overlap_and_need_two_samples() -> None:
    (edge,) = memory_growth(_samples((0, 0, 100), (5, 0, 110), (10, 0, 120)), start=0, window=3)
    assert (edge.after_warmup, edge.end) == (100 * MIB, 120 * MIB)
    with pytest.raises(ValueError, match="at least 2"):
        memory_growth(_samples((0, 0, 100), (5, 0, 100)), start=1, window=3)


def test_five_percent_growth_fails_and_shrinking_passes() -> None:
    assert not Growth("nats", after_warmup=100.0, end=105.0, peak=105).passed
    assert Growth("nats", after_warmup=100.0, end=104.9, peak=105).passed
    shrunk = Growth("billing", after_warmup=100.0, end=90.0, peak=100)
    assert shrunk.passed and shrunk.growth_pct == pytest.approx(-10.0)


def _verdicts(client: ClientCounts, stream: StreamCounts, ledger: LedgerCounts) -> list[bool]:
    return [v.passed for v in check_ledger(client, stream, ledger)]


def test_an_exact_ledger_passes_even_with_requests_served_after_wrk_stopped() -> None:
    # 2 pre-load checks + 1,000 answered + 3 of the 5 in flight were served and billed.
    client = ClientCounts(sent=1_005, answered=1_000, ok=1_000)
    stream = StreamCounts(published=1_005, billed=1_005, pending=0)
    assert _verdicts(client, stream, LedgerCounts(total=1_005, run=1_003, run_distinct=1_003)) == [
        True,
        True,
        True,
        True,
    ]


def test_each_way_the_ledger_can_be_wrong_fails_its_own_check() -> None:
    client = ClientCounts(sent=1_005, answered=1_000, ok=1_000)
    drained = StreamCounts(published=1_005, billed=1_005, pending=0)
    # billing still behind
    assert _verdicts(
        client,
        StreamCounts(published=1_005, billed=900, pending=105),
        LedgerCounts(total=900, run=898, run_distinct=898),
    ) == [False, False, True, False]
    # an event lost: fewer entries than events, and fewer than the answered requests
    assert _verdicts(client, drained, LedgerCounts(total=1_001, run=999, run_distinct=999)) == [
        True,
        False,
        True,
        False,
    ]
    # a request billed twice (under two event ids)
    assert _verdicts(
        client,
        StreamCounts(published=1_006, billed=1_006, pending=0),
        LedgerCounts(total=1_006, run=1_004, run_distinct=1_003),
    ) == [True, True, False, True]
    # more entries than requests written
    assert _verdicts(client, drained, LedgerCounts(total=1_008, run=1_006, run_distinct=1_006))[
        1:
    ] == [False, True, False]


def test_non_2xx_answers_are_not_expected_in_the_ledger() -> None:
    client = ClientCounts(sent=100, answered=100, ok=97)
    stream = StreamCounts(published=97, billed=97, pending=0)
    assert all(_verdicts(client, stream, LedgerCounts(total=97, run=97, run_distinct=97)))


SOAK_OUTPUT = """Running 3m test @ http://127.0.0.1:1/v1/chat/completions
  2 threads and 32 connections
SOAK_RESULT {"sent":1030,"answered":1002,"ok_chat":400,"ok_stream":499,"ok_endpoint":40,"ok_grounded":30,"ok_channel":30,"not_ok":3,"requests":1002,"duration_us":4000000,"errors":{"connect":0,"read":2,"write":0,"status":3,"timeout":1},"latency_us":{"p50":1500,"p99":9000,"max":12000}}
"""


def test_wrk_soak_output_gives_exact_counts_and_every_error() -> None:
    result = parse_soak_output(SOAK_OUTPUT)
    assert result.client == ClientCounts(sent=1030, answered=1002, ok=999)
    assert result.client.unanswered == 28
    assert result.ok == {"chat": 400, "stream": 499, "endpoint": 40, "grounded": 30, "channel": 30}
    assert result.errors == 3 + 2 + 1
    assert result.rps == pytest.approx(250.5)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (1.5, 9.0, 12.0)
    with pytest.raises(LoadError, match="SOAK_RESULT"):
        parse_soak_output("wrk: connection refused\n")


def test_the_nats_monitor_answer_gives_the_stream_and_billing_consumer() -> None:
    consumer = {
        "name": "billing-ledger",
        "ack_floor": {"stream_seq": 90},
        "num_pending": 7,
        "num_ack_pending": 3,
    }
    document = {
        "account_details": [
            {
                "stream_detail": [
                    {"name": "TRANSCRIPTS", "state": {"last_seq": 5}, "consumer_detail": []},
                    {"name": "USAGE", "state": {"last_seq": 100}, "consumer_detail": [consumer]},
                ]
            }
        ]
    }
    counts = parse_jsz(document, stream="USAGE", consumer="billing-ledger")
    assert counts == StreamCounts(published=100, billed=90, pending=10)
    with pytest.raises(KeyError):
        parse_jsz(document, stream="USAGE", consumer="other")


def test_ledger_counts_only_this_runs_ids_literally(tmp_path: Path) -> None:
    database = tmp_path / "billing.db"
    with sqlite3.connect(database) as db:
        db.execute("create table ledger_entries (id integer primary key, request_id text)")
        ids = ["soak_a-1-1", "soak_a-1-2", "soak_a-1-2", "soakXa-1-3", "check-1", "soak_a"]
        db.executemany("insert into ledger_entries (request_id) values (?)", [(i,) for i in ids])
    # "_" is literal (not LIKE's any-character) and the prefix must be followed by "-".
    assert ledger_counts(database, id_prefix="soak_a") == LedgerCounts(
        total=6, run=3, run_distinct=2
    )


def test_the_soak_section_has_its_tables_and_its_own_markers(tmp_path: Path) -> None:
    samples = _samples((0, 0, 100), (5, 0, 100), (10, 0, 110), (15, 0, 110))
    client = ClientCounts(sent=10, answered=10, ok=10)
    ledger = check_ledger(
        client, StreamCounts(12, 12, 0), LedgerCounts(total=12, run=10, run_distinct=10)
    )
    section = render_soak(
        summary=["Result: **FAIL**"],
        growth=memory_growth(samples, start=0, window=2),
        after_drain={"edge": 111 * MIB},
        warmup="warm-up = none",
        ledger=ledger,
        machine=["CPU: test"],
    )
    assert "| edge | 100.0 | 110.0 | +10.0 % | 110.0 | 111.0 | NO |" in section
    assert "| one entry per request id | 10 entries, 10 distinct ids | pass |" in section
    unmeasured = render_soak(
        summary=[], growth=None, after_drain={}, warmup="", ledger=ledger, machine=[]
    )
    assert "stopped before warm-up ended" in unmeasured

    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# B\n\n{BEGIN}\nbench figures\n{END}\n\n## Soak\n\n{SOAK_BEGIN}\nold\n{SOAK_END}\n"
    )
    write_section(doc, section, begin=SOAK_BEGIN, end=SOAK_END)
    text = doc.read_text()
    assert "bench figures" in text and "old" not in text and "| edge | 100.0" in text


@pytest.mark.skipif(
    not (shutil.which("wrk") and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())),
    reason="nginx and wrk come from `make bench-deps`",
)
def test_the_wrk_script_stops_at_the_request_count_and_counts_what_is_in_flight(
    tmp_path: Path,
) -> None:
    layout = BenchLayout(work=tmp_path)
    with (
        Nginx(layout) as nginx,
        SoakWrk(
            nginx.url(stream=False),
            script=layout.input("wrk/soak.lua"),
            kinds=[
                MixKind("chat", "/v1/chat/completions", chat_body("bench-chat", stream=False), {}),
                MixKind(
                    "session",
                    "/v1/chat/completions",
                    b"{}",
                    {"X-Test": "1"},
                    session="chosen",
                    session_body=b'{"session_id": "@SESSION@"}',
                ),
            ],
            cycle=("chat", "chat", "session"),
            session_turns=3,
            id_prefix="soak-test",
            requests=2_001,
            connections=8,
            max_s=50,
            log_path=tmp_path / "wrk.log",
        ) as wrk,
    ):
        deadline = time.monotonic() + 40
        while wrk.poll() is None:
            assert time.monotonic() < deadline, "wrk did not reach its request count"
            time.sleep(0.1)
        result = wrk.result()
    assert wrk.bound == "count"
    assert result.errors == 0
    assert 2_001 <= result.client.answered == result.client.ok <= result.client.sent
    # nginx answers both bodies with the chat JSON; the script tells the kinds apart by body.
    assert result.ok["chat"] == result.client.ok
    assert result.client.unanswered <= 8


def test_failures_name_every_broken_rule_and_none_when_all_hold() -> None:
    flat = Growth("edge", after_warmup=100.0, end=101.0, peak=101)
    grown = Growth("nats", after_warmup=100.0, end=110.0, peak=110)
    client = ClientCounts(sent=10, answered=10, ok=10)
    exact = check_ledger(
        client, StreamCounts(10, 10, 0), LedgerCounts(total=10, run=10, run_distinct=10)
    )
    short = check_ledger(
        client, StreamCounts(10, 10, 0), LedgerCounts(total=9, run=9, run_distinct=9)
    )
    assert failures([flat], exact, errors=0) == []
    assert failures([flat, grown], short, errors=2) == [
        "nats grew +10.0 %",
        "ledger entries == usage events published: 9 entries, 10 events",
        "entries within [2xx answered, 2xx answered + unanswered]: 9 in [10, 10]",
        "2 errors",
    ]
    assert failures(None, exact, errors=0) == [
        "memory not measured (the load stopped before warm-up ended)"
    ]


def test_billing_requests_are_summed_over_statuses_by_subject() -> None:
    metrics = (
        "# TYPE switchyard_billing_requests_total counter\n"
        'switchyard_billing_requests_total{status="ok",subject="billing.budget.lease.v1"} 7.0\n'
        'switchyard_billing_requests_total{status="error",subject="billing.budget.lease.v1"} 1.0\n'
        'switchyard_billing_requests_total{status="ok",subject="billing.budget.release.v1"} 5.0\n'
        'switchyard_billing_requests_created{status="ok",subject="billing.budget.lease.v1"} 1.7e9\n'
    )
    assert parse_billing_requests(metrics) == {
        "billing.budget.lease.v1": 8.0,
        "billing.budget.release.v1": 5.0,
    }
