"""The short forms of the reliability drills (issue 19, docs/reliability.md), in make test.

The drills share one drill stack (the kit's catalog, SQLite) started for this
module, so they stay together on one xdist worker (``xdist_group("drills")``)
and start no stack beyond it. Order matters: d10 and d11 fuzz over projects of their own;
d09 only reads; d03 switches the kit's fault proxies on and off (all off again when it
returns); d07's live part fills rate-limit windows of a project of its own and blackholes
billing's and the edges' NATS links (it waits until both serve again); d08 breaks and heals
its own deployment; d01 kills and restarts billing (and adds a second edge for its
run), d02 sessions, d05 the edge (each waits until it serves again); d06 kills and
restarts the router, so it runs last. d04 needs a NATS cluster: it starts one and a
stack of its own (after the others). The full forms are ``make drills``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from devtools.drills import (
    d01_billing_kill,
    d02_sessions_kill,
    d03_network_faults,
    d04_nats_cluster,
    d05_edge_kill,
    d06_router_kill,
    d07_live_limits,
    d08_failover,
    d09_midstream_reset,
    d10_fuzz,
    d11_isolation,
)
from devtools.drills.kit import DrillStack, drill_stack

pytestmark = [pytest.mark.xdist_group("drills"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def kit() -> Iterator[DrillStack]:
    with drill_stack() as running:
        yield running


#: In the order they must run (see above).
DRILLS = [
    d10_fuzz,
    d11_isolation,
    d09_midstream_reset,
    d03_network_faults,
    d07_live_limits,
    d08_failover,
    d01_billing_kill,
    d02_sessions_kill,
    d05_edge_kill,
    d06_router_kill,
]


@pytest.mark.parametrize("drill", DRILLS, ids=lambda drill: drill.__name__.rsplit(".", 1)[-1])
def test_short_form_passes(kit: DrillStack, drill: ModuleType) -> None:
    result = drill.run(False, kit)
    assert result.passed, result.line() + f" [{result.detail}]"


def test_d04_nats_cluster_short_form() -> None:
    """d04 starts a 3-node NATS cluster and a stack of its own on it (not the shared kit)."""
    result = d04_nats_cluster.run(False)
    assert result.passed, result.line() + f" [{result.detail}]"
