"""``Server-Timing``: the time to the answer split by hop, the parts adding up to it."""

from __future__ import annotations

import re

import pytest

from edge.api.proxy import server_timing
from gateway.router.v1 import router_pb2


def parts(header: str) -> dict[str, float]:
    found = dict(re.findall(r"([a-z]+);dur=([0-9.]+)", header))
    return {name: float(value) for name, value in found.items()}


def test_the_four_hops_add_up_to_the_total() -> None:
    route = router_pb2.RouteInfo(upstream_ms=2.0, router_ms=3.5, publish_ms=0.5)
    timing = parts(server_timing(route, total_ms=5.0))
    assert timing == {"edge": 1.5, "router": 1.0, "publish": 0.5, "upstream": 2.0}
    assert sum(timing.values()) == pytest.approx(5.0)


def test_a_router_that_reports_no_time_gets_only_the_upstream() -> None:
    assert server_timing(router_pb2.RouteInfo(upstream_ms=2.0), total_ms=5.0) == (
        "upstream;dur=2.000"
    )


def test_clock_skew_between_processes_never_shows_a_negative_duration() -> None:
    # Two processes measure: whatever they report, no part is ever negative.
    route = router_pb2.RouteInfo(upstream_ms=1.0, router_ms=5.2, publish_ms=0.0)
    timing = parts(server_timing(route, total_ms=5.0))
    assert timing["edge"] == 0.0 and timing["router"] == pytest.approx(4.2)
