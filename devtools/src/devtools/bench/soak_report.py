"""The soak's verdicts and its Markdown section: memory growth after warm-up, and the ledger check.

Pure functions over what ``soak`` collected, so each rule is unit-tested:

    Sample          one reading along the way: time, requests served, RSS per service
    warmup_end      index of the first sample past warm-up (both a share of the requests
                    and a minimum time must have passed)
    memory_growth   per service: RSS just after warm-up vs at the end of the load
    check_ledger    the ledger against the load generator's and the USAGE stream's counts
    failures        why the soak fails (none: it passes)
    render_soak     the section printed and written into docs/benchmarks.md

RSS "after warm-up" is the median of the first ``window`` samples from the end of
warm-up, RSS "at the end" the median of the last ``window`` samples under load:
medians, because one sample can land mid-way through a garbage collection or an
allocator's release. Growth is their relative difference; a service passes under
``GROWTH_LIMIT_PCT``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "GROWTH_LIMIT_PCT",
    "SOAK_BEGIN",
    "SOAK_END",
    "ClientCounts",
    "Growth",
    "LedgerCounts",
    "Sample",
    "StreamCounts",
    "Verdict",
    "check_ledger",
    "failures",
    "memory_growth",
    "render_soak",
    "warmup_end",
]

SOAK_BEGIN = "<!-- BEGIN make soak: generated, do not edit by hand -->"
SOAK_END = "<!-- END make soak -->"
#: A service fails the soak when its RSS grows this much (percent) or more after warm-up.
GROWTH_LIMIT_PCT = 5.0
_MIB = 1 << 20


@dataclass(frozen=True)
class Sample:
    """One reading taken while the load runs."""

    t_s: float
    """Seconds since the load started."""
    served: int
    """Usage events in the USAGE stream so far: requests the gateway completed."""
    billed: int
    """Of those, the events billing has acknowledged (written to the ledger)."""
    rss: Mapping[str, int]
    """Resident bytes (VmRSS) of each service's process tree."""


def warmup_end(
    samples: Sequence[Sample], *, requests: int, share: float, min_s: float
) -> int | None:
    """Index of the first sample taken once ``share`` of ``requests`` were served and
    ``min_s`` seconds had passed; ``None`` if the load never got that far."""
    for index, sample in enumerate(samples):
        if sample.served >= share * requests and sample.t_s >= min_s:
            return index
    return None


@dataclass(frozen=True)
class Growth:
    """One service's memory over the measured (post-warm-up) part of the soak."""

    service: str
    after_warmup: float
    """Bytes: median of the first samples from the end of warm-up."""
    end: float
    """Bytes: median of the last samples under load."""
    peak: int
    """Bytes: the largest single sample after warm-up."""

    @property
    def growth_pct(self) -> float:
        """``end`` relative to ``after_warmup``, in percent (negative when it shrank)."""
        return 100 * (self.end - self.after_warmup) / self.after_warmup

    @property
    def passed(self) -> bool:
        """Whether the growth stays under ``GROWTH_LIMIT_PCT``."""
        return self.growth_pct < GROWTH_LIMIT_PCT


def memory_growth(samples: Sequence[Sample], *, start: int, window: int) -> list[Growth]:
    """Growth of every service from ``samples[start]`` on (see the module docstring).

    The two windows never overlap: with fewer than ``2 * window`` samples after
    warm-up each takes half of them. Raises ``ValueError`` with fewer than two.
    """
    measured = samples[start:]
    if len(measured) < 2:
        raise ValueError(f"{len(measured)} sample(s) after warm-up; growth needs at least 2")
    width = max(1, min(window, len(measured) // 2))
    head, tail = measured[:width], measured[-width:]
    return [
        Growth(
            service=name,
            after_warmup=statistics.median(s.rss[name] for s in head),
            end=statistics.median(s.rss[name] for s in tail),
            peak=max(s.rss[name] for s in measured),
        )
        for name in measured[0].rss
    ]


@dataclass(frozen=True)
class ClientCounts:
    """What the load generator saw (summed over wrk's threads)."""

    sent: int
    """Requests written, each with its own X-Request-Id."""
    answered: int
    """Responses read, whatever their status."""
    ok: int
    """2xx responses."""

    @property
    def unanswered(self) -> int:
        """Written but never answered to wrk: in flight when it stopped, or lost to a socket
        error. The gateway may have served (and billed) each of them, or not."""
        return self.sent - self.answered


@dataclass(frozen=True)
class StreamCounts:
    """The USAGE stream and billing's durable consumer, from the NATS monitor."""

    published: int
    """Events the stream accepted (its last sequence; duplicates by Nats-Msg-Id are dropped)."""
    billed: int
    """Stream sequence up to which billing has acknowledged every event."""
    pending: int
    """Events not yet delivered to billing plus those delivered but not acknowledged."""


@dataclass(frozen=True)
class LedgerCounts:
    """Billing's ledger after the drain."""

    total: int
    """All entries (the run's plus the pre-load correctness checks')."""
    run: int
    """Entries whose request id carries this run's prefix."""
    run_distinct: int
    """Distinct request ids among those."""


@dataclass(frozen=True)
class Verdict:
    """One check: what was required, what was found, whether it holds."""

    what: str
    found: str
    passed: bool


def check_ledger(client: ClientCounts, stream: StreamCounts, ledger: LedgerCounts) -> list[Verdict]:
    """The ledger holds exactly one entry per request, shown three ways.

    1. billing has drained the stream (nothing pending), so the ledger is final;
    2. every usage event the stream accepted became exactly one entry (entries are
       unique by event id, so equal counts mean none lost and none doubled);
    3. no request id of the run has two entries, and the run's entries number at
       least the 2xx answers wrk read and at most those plus the requests wrk wrote
       but never saw answered (each of which the gateway may or may not have served).
    """
    low, high = client.ok, client.ok + client.unanswered
    return [
        Verdict("billing drained the USAGE stream", f"{stream.pending:,} pending", stream.pending == 0),
        Verdict(
            "ledger entries == usage events published",
            f"{ledger.total:,} entries, {stream.published:,} events",
            ledger.total == stream.published,
        ),
        Verdict(
            "one entry per request id",
            f"{ledger.run:,} entries, {ledger.run_distinct:,} distinct ids",
            ledger.run == ledger.run_distinct,
        ),
        Verdict(
            "entries within [2xx answered, 2xx answered + unanswered]",
            f"{ledger.run:,} in [{low:,}, {high:,}]",
            low <= ledger.run <= high,
        ),
    ]  # fmt: skip


def failures(growth: Sequence[Growth] | None, ledger: Sequence[Verdict], errors: int) -> list[str]:
    """Why the soak fails, one reason per failed rule; empty when it passes.

    It passes when memory was measured and no service grew ``GROWTH_LIMIT_PCT`` or
    more, every ledger check holds, and the load had no errors.
    """
    reasons = []
    if growth is None:
        reasons.append("memory not measured (the load stopped before warm-up ended)")
    else:
        reasons += [f"{g.service} grew {g.growth_pct:+.1f} %" for g in growth if not g.passed]
    reasons += [f"{v.what}: {v.found}" for v in ledger if not v.passed]
    if errors:
        reasons.append(f"{errors:,} errors")
    return reasons


def _mib(value: float) -> str:
    return f"{value / _MIB:,.1f}"


def render_soak(
    *,
    summary: Sequence[str],
    growth: Sequence[Growth] | None,
    after_drain: Mapping[str, int],
    warmup: str,
    ledger: Sequence[Verdict],
    machine: Sequence[str],
) -> str:
    """The Markdown section: the run's facts, the memory table, the ledger checks, the machine.

    ``growth`` is ``None`` when the load stopped before warm-up ended (reported as a failure).
    """
    lines = [
        *(f"- {line}" for line in summary),
        "",
        f"Memory (VmRSS of each service's process tree; {warmup}):",
        "",
    ]
    if growth is None:
        lines += ["Not measured: the load stopped before warm-up ended.", ""]
    else:
        lines += [
            "| service | after warm-up MiB | end of load MiB | growth | peak after warm-up MiB | after drain MiB | < 5 % |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {g.service} | {_mib(g.after_warmup)} | {_mib(g.end)} | {g.growth_pct:+.1f} % "
            f"| {_mib(g.peak)} | {_mib(after_drain.get(g.service, 0))} | {'yes' if g.passed else 'NO'} |"
            for g in growth
        ]
        lines.append("")
    lines += ["Ledger:", "", "| check | found | |", "|---|---|---|"]
    lines += [f"| {v.what} | {v.found} | {'pass' if v.passed else 'FAIL'} |" for v in ledger]
    lines += ["", "Machine:", "", *(f"- {line}" for line in machine), ""]
    return "\n".join(lines)
