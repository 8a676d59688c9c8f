"""Fixtures for the edge's tests.

The edge runs in-process with its real lifespan, against real dependencies
reached over sockets: a private nats-server with a billing process on it
(budget leases), a SQLite file migrated with the edge's own Alembic history,
and a grpc.aio server speaking the router contract with a scripted servicer
(``support.ScriptedRouter``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client

from edge import EdgeSettings, create_app
from edge.store import migrations_dir
from gateway_common import db
from gateway_common.testing import nats_server, service_process

from .billing_process import ROOT, billing_answers
from .support import (
    SECRET,
    Edge,
    RouterServer,
    ScriptedRouter,
    free_port,
    seed_keys,
    serve_router,
    wait_for_port,
)

NATS_BIN = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "nats-server"


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private nats-server (JetStream on, temp store) for the whole session, with a billing
    process answering on it: the edge admits no priced request without billing's word on
    the project's budgets (``edge.budget``); a project without any is admitted freely."""
    port = free_port()
    store = tmp_path_factory.mktemp("nats")
    proc = subprocess.Popen(
        [str(NATS_BIN), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        url = f"nats://127.0.0.1:{port}"
        data = tmp_path_factory.mktemp("billing")
        env = {
            "NATS_URL": url,
            "GATEWAY_DATA_DIR": str(data),
            "BILLING_CATALOG_PATH": str(ROOT / "config" / "catalog.yaml"),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        with service_process("billing", env, log_path=data / "billing.log"):
            asyncio.run(billing_answers(url))
            yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def router() -> AsyncIterator[RouterServer]:
    """A grpc.aio server on a free port speaking the router contract (scripted)."""
    async with serve_router(ScriptedRouter()) as server:
        yield server


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own (no billing on it), for scripted responders
    (``scripted_nats``)."""
    with nats_server(tmp_path / "nats") as url:
        yield url


@pytest.fixture
async def nc(private_nats: str) -> AsyncIterator[Client]:
    """A connection to ``private_nats``."""
    client = await nats.connect(private_nats)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite database with empty tables."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'edge.db'}"
    db.migrate(url=url, migrations_dir=migrations_dir(), service="edge")
    return url


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return EdgeSettings(
        nats_url=nats_url,
        database_url=db_url,
        router_addr=router.addr,
        secret_key=SECRET,
        max_body_bytes=64 * 1024,
        request_timeout_s=10,
    )


@pytest.fixture
async def edge(settings: EdgeSettings) -> AsyncIterator[Edge]:
    """The edge app (real lifespan, seeded keys) behind httpx's ASGI transport."""
    key_ids = await seed_keys(settings.resolved_database_url())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            yield Edge(app, client, key_ids)
