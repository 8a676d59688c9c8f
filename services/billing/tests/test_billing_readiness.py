"""Readiness: billing's /readyz turns ready only once its responders and consumer are subscribed.

A real nats-server and SQLite; billing runs in-process (``billing.main.run``)
with its probes on a free port. Until it calls ``Runtime.serving`` it is not
ready however healthy NATS and the database are; once its /readyz answers
200, every ``billing.*`` subject has a responder and the usage consumer exists
(the 503 ``NoRespondersError`` race of issue 19).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from billing.api import BillingApi
from billing.config import BillingSettings
from billing.main import run
from gateway_common import subjects
from gateway_common.testing import free_port, health_reply, wait_for

pytestmark = pytest.mark.timeout(60)

#: How long a service that has not said it is serving is watched staying unready.
_WATCH_S = 1.0


def _settings(nats_url: str, catalog_path: Path, tmp_path: Path) -> BillingSettings:
    return BillingSettings(
        nats_url=nats_url,
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        catalog_path=catalog_path,
        metrics_port=free_port(),
        metrics_host="127.0.0.1",
    )


async def _readyz(settings: BillingSettings) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return await http.get(f"http://127.0.0.1:{settings.metrics_port}/readyz")
    except httpx.TransportError:
        return None


async def test_ready_only_once_every_responder_and_the_consumer_are_subscribed(
    nats_url: str, catalog_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(nats_url, catalog_path, tmp_path)
    # Billing's start is held where it subscribes its request API (a delay, not a stand-in):
    # NATS and the database answer meanwhile, and the service must still not be ready.
    held, release = asyncio.Event(), asyncio.Event()
    subscribe = BillingApi.start

    async def held_start(api: BillingApi, nc: Client) -> None:
        held.set()
        await release.wait()
        await subscribe(api, nc)

    monkeypatch.setattr(BillingApi, "start", held_start)
    stop = asyncio.Event()
    service = asyncio.create_task(run(settings, stop))
    nc = await nats.connect(nats_url)
    try:
        await asyncio.wait_for(held.wait(), 30)
        # NATS and the database answer (health says ok), yet billing is not ready.
        health = await wait_for(lambda: health_reply(nc, "billing"), timeout_s=30)
        assert health == {"service": "billing", "status": "ok"}
        deadline = time.monotonic() + _WATCH_S
        probes = 0
        while time.monotonic() < deadline and probes < 100:  # the watch's first pass runs at once
            resp = await _readyz(settings)
            assert resp is not None and (resp.status_code, resp.text) == (
                503,
                "not ready: starting\n",
            )
            probes += 1
            await asyncio.sleep(0.05)
        release.set()

        async def ready() -> bool | None:
            assert not service.done(), service
            resp = await _readyz(settings)
            return True if resp is not None and resp.status_code == 200 else None

        await wait_for(ready, timeout_s=30, interval_s=0.01)
        # At the first 200: no subject of billing's API is without a responder.
        for subject in (
            subjects.BILLING_BUDGET_LEASE,
            subjects.BILLING_BUDGET_RELEASE,
            subjects.BILLING_SPEND_GET,
        ):
            try:
                await nc.request(subject, b"{}", timeout=5)
            except NoRespondersError:
                pytest.fail(f"/readyz was 200 but {subject} had no responder")
        info = await nc.jetstream().consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
        assert info.name == subjects.BILLING_DURABLE
    finally:
        await nc.close()
        release.set()
        stop.set()
        await asyncio.wait_for(service, 20)
