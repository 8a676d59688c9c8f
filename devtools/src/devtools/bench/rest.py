"""``python -m devtools.bench.rest``: each service's resident memory at rest, after start.

Starts the whole stack as ``make bench`` does (``Switchyard``: nats-server,
edge, router, billing, sessions, rag; SQLite under ``bench/.work/switchyard``),
sends nothing, waits ``--settle`` seconds, then reads each tree's ``VmRSS``
``--samples`` times, ``--interval`` seconds apart, and prints the median per
service and their total as a Markdown table, and the total with each mapped
file counted once (``procstats.resident_shared_once``). No upstream is needed: no request
is made, so the catalog's upstream URL is never dialled.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Sequence

from .layout import BenchLayout
from .procstats import process_tree, resident_shared_once, rss_by_root
from .switchyard import Switchyard

__all__ = ["main", "measure_rest"]

_MIB = 1024 * 1024


def measure_rest(*, settle_s: float, samples: int, interval_s: float) -> dict[str, float]:
    """Median resident MiB of each Switchyard tree at rest, plus ``total`` and
    ``total, files once``."""
    target = Switchyard(
        BenchLayout(), upstream_url="http://127.0.0.1:9", api_key="sk-rest-" + secrets.token_hex(8)
    )
    with target:
        roots = target.process_roots()
        time.sleep(settle_s)
        readings: dict[str, list[int]] = {name: [] for name in roots}
        once: list[int] = []
        for index in range(samples):
            if index:
                time.sleep(interval_s)
            owner = process_tree(roots)
            for name, rss in rss_by_root(owner, roots).items():
                readings[name].append(rss)
            once.append(resident_shared_once(owner))
    medians = {name: statistics.median(values) / _MIB for name, values in readings.items()}
    medians["total"] = sum(medians.values())
    medians["total, files once"] = statistics.median(once) / _MIB
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, measure, print the table; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.rest", description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after ready (5)")
    parser.add_argument("--samples", type=int, default=5, help="readings (5)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between them (1)")
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    medians = measure_rest(settle_s=args.settle, samples=args.samples, interval_s=args.interval)
    print(f"load average before: {load}")
    print("| service | RSS at rest MiB |\n|---|---|")
    for name, mib in medians.items():
        print(f"| {name} | {mib:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
