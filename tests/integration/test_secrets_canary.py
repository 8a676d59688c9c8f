"""Secrets canary (issue 19 point 12, drill d12's short form): 0 canary hits.

A stack of its own (SQLite) whose admin token, API key and provider credentials
(environment, managed, BYOK) are canaries; traffic with successes, bad requests,
refused keys and provider failures; then logs, response bodies, ``/metrics`` and
every JetStream message are searched (``devtools.drills.d12_secrets``).
"""

from __future__ import annotations

import asyncio

import pytest

from devtools.drills import d12_secrets

pytestmark = [pytest.mark.xdist_group("canary"), pytest.mark.timeout(300)]


def test_no_canary_secret_appears_anywhere() -> None:
    canaries = d12_secrets.Canaries.fresh()
    with d12_secrets.canary_stack(canaries) as (stack, data_dir):
        findings = asyncio.run(d12_secrets.drive_and_search(stack, data_dir, canaries))
    assert findings.hits == []
    # The search covered every kind of place, and the traffic did what it meant to.
    assert set(findings.searched) == {
        "responses",
        "metrics scrapes",
        "stream messages",
        "log files",
    }
    assert findings.searched["stream messages"] > 0
    assert findings.statuses["chat 0"] == 200 and findings.statuses["byok chat"] == 200
    assert findings.statuses["admin add managed credential"] == 201
    assert findings.statuses["provider failure 0"] == 502
    assert findings.statuses["refused key"] == 401
    assert findings.statuses["refused admin token"] == 401
    assert all(v < 500 for k, v in findings.statuses.items() if "failure" not in k)
