"""d07: property tests of the rate limiter and the budget leases (hypothesis).

Load: hypothesis draws operation sequences against the edge's ``RateLimiter``
(two limiters on a real nats-server, a fake clock) and billing's reserve ->
settle leases (real SQLite and PostgreSQL), each checked step by step against a
model (``services/edge/tests/test_edge_ratelimit_properties.py``,
``services/billing/tests/test_billing_budget_properties.py``). The figure is the
number of falsifying examples found: 0 to pass. The full form draws 200
examples per property, the short form 40 (as ``make test-unit`` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.drills.base import DrillResult

NAME = "d07 property tests"
_ROOT = Path(__file__).resolve().parents[4]
_TESTS = (
    "services/edge/tests/test_edge_ratelimit_properties.py",
    "services/billing/tests/test_billing_budget_properties.py",
)


def run(full: bool) -> DrillResult:
    """Run both property tests with 200 (full) or 40 examples each."""
    examples = 200 if full else 40
    env = {**os.environ, "SWITCHYARD_PROPERTY_EXAMPLES": str(examples)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", *_TESTS],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    falsifying = proc.stdout.count("Falsifying example")
    passed = proc.returncode == 0
    if not passed and falsifying == 0:
        falsifying = -1  # failed otherwise (collection, a fixture): not a figure
    tail = "\n".join(proc.stdout.splitlines()[-5:])
    return DrillResult(
        name=NAME,
        load=f"{examples} examples x 3 properties (limiter; leases on SQLite and PostgreSQL)",
        faults="hypothesis-drawn operation sequences, fake clock",
        figure=f"{max(falsifying, 0)} falsifying examples" if falsifying >= 0 else "run failed",
        passed=passed,
        detail=tail,
    )
