"""The whole stack starts, answers, and stops without leaving a process behind."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from devtools.ports import PortPlan, port_in_use
from devtools.stack import SERVICES, Stack, StackConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stack_starts_and_stops_cleanly(tmp_path: Path) -> None:
    plan = PortPlan.free()
    stack = Stack(StackConfig(tmp_path, plan, api_key="sk-sy-it-lifecycle", admin_token="t"))
    with stack:
        children = stack.children
        assert list(children) == ["nats", "fakeprovider", *SERVICES]
        assert httpx.get(f"{stack.base_url}/readyz").status_code == 200
        assert httpx.get(f"{stack.base_url}/healthz").status_code == 200
    statuses = stack.stop()
    assert statuses == dict.fromkeys(children, 0), "every child exits 0 on SIGTERM"
    for child in children.values():
        assert not _group_alive(child.pid), f"{child.name} left a process behind"
    busy = {name: port for name, port in plan.as_dict().items() if port_in_use(port)}
    assert not busy, f"ports still bound after stop: {busy}"
