"""Module-scoped fixtures that run a real billing process for edge tests that need it.

Import them into a test module (``from .billing_process import billing, nats_url``):
``nats_url`` then replaces the session's server with the module's own, so its
billing (``python -m billing`` on a SQLite file) answers only that module's edges.
Usage reaches billing's ledger the way the router sends it (``publish_usage``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from gateway_common import billing_api as wire
from gateway_common import subjects
from gateway_common.events import UsageRecorded
from gateway_common.testing import nats_server, service_process, wait_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own nats-server."""
    with nats_server(tmp_path_factory.mktemp("nats-billing")) as url:
        yield url


@pytest.fixture(scope="module")
def billing(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A billing process on its own SQLite file, answering on ``nats_url``."""
    data = tmp_path_factory.mktemp("billing")
    env = {
        "NATS_URL": nats_url,
        "GATEWAY_DATA_DIR": str(data),
        "BILLING_CATALOG_PATH": str(ROOT / "config" / "catalog.yaml"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    with service_process("billing", env, log_path=data / "billing.log"):
        yield


async def billing_answers(nats_url: str) -> None:
    """Return once billing answers its request subjects (not just its health check)."""
    nc = await nats.connect(nats_url)
    query = wire.SpendQuery(project_id="probe").to_bytes()

    async def probe() -> bool | None:
        try:
            await nc.request(subjects.BILLING_SPEND_GET, query, timeout=0.5)
        except NatsError:
            return None
        return True

    try:
        await wait_for(probe, timeout_s=30)
    finally:
        await nc.close()


async def publish_usage(nats_url: str, event: UsageRecorded) -> None:
    """Publish ``event`` on JetStream as the router does (``Nats-Msg-Id`` = event id)."""
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            subjects.USAGE_RECORDED, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id}
        )
    finally:
        await nc.close()
