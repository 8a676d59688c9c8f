"""Helpers shared by the edge's tests (fixtures live in ``conftest.py``).

``ScriptedRouter`` implements the router's gRPC contract with answers each
test scripts: the router *service* is not involved, only its wire contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import nats
import orjson
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2

from edge import EdgeSettings
from edge.auth import ALL_SCOPES, hash_api_key
from edge.store import ApiKeyCreate, repo
from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common import billing_api as wire
from gateway_common import db
from gateway_common.errors import GatewayError, to_detail
from gateway_common.grpc import add_health, set_serving

SECRET = "test-secret-key"
ADMIN_TOKEN = "test-admin-token-0123456789"
#: The operator's ``Authorization`` header for the admin API.
OPERATOR = {"authorization": f"Bearer {ADMIN_TOKEN}"}

#: Keys seeded into every test database: name -> (key, scopes, expires_at, revoked).
KEYS = {
    "all": ("sk-test-all-scopes-0001", list(ALL_SCOPES), None, False),
    "embed": ("sk-test-embed-only-0002", ["embeddings"], None, False),
    "revoked": ("sk-test-revoked-00003", list(ALL_SCOPES), None, True),
    "expired": ("sk-test-expired-00004", list(ALL_SCOPES), datetime(2020, 1, 1, tzinfo=UTC), False),
}


def auth(name: str = "all") -> dict[str, str]:
    """Authorization header for one of ``KEYS``."""
    return {"authorization": f"Bearer {KEYS[name][0]}"}


def admin_settings(
    nats_url: str, db_url: str, router: RouterServer, **overrides: object
) -> EdgeSettings:
    """Settings of an edge whose admin API answers ``OPERATOR``; ``overrides`` win."""
    fields: dict[str, object] = {
        "nats_url": nats_url,
        "database_url": db_url,
        "router_addr": router.addr,
        "secret_key": SECRET,
        "admin_token": ADMIN_TOKEN,
        "request_timeout_s": 10,
    }
    return EdgeSettings(**(fields | overrides))


async def billing_request(
    nats_url: str, subject: str, message: wire.BudgetSet | wire.CreditsTopUp
) -> None:
    """Send one of billing's admin requests over NATS; its reply must be ``ok``."""
    nc = await nats.connect(nats_url)
    try:
        reply = orjson.loads((await nc.request(subject, message.to_bytes(), timeout=5)).data)
    finally:
        await nc.close()
    assert reply["status"] == "ok", reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 5.0) -> None:
    """Poll ``check`` until it is true or ``within`` seconds pass (then fail)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


def route_event(provider: str = "fake", deployment: str = "fake/mock") -> router_pb2.StreamEvent:
    return router_pb2.StreamEvent(
        route=router_pb2.RouteInfo(
            provider=provider, deployment=deployment, attempts=1, model="m", upstream_ms=5.0
        )
    )


def chunk_event(data: bytes) -> router_pb2.StreamEvent:
    """One chunk on its own, as routers sent them before ``ChunkBatch`` (still accepted)."""
    return router_pb2.StreamEvent(chunk=data)


def batch_event(*chunks: bytes) -> router_pb2.StreamEvent:
    """Chunks the router had ready together, in one message (what routers send now)."""
    return router_pb2.StreamEvent(chunks=router_pb2.ChunkBatch(chunks=chunks))


def usage_event() -> router_pb2.StreamEvent:
    return router_pb2.StreamEvent(usage=types_pb2.Usage(prompt_tokens=1, completion_tokens=2))


async def abort(context: grpc.aio.ServicerContext, err: GatewayError) -> None:
    """Fail a call exactly as the router contract says."""
    await context.abort(
        err.grpc_code,
        err.message,
        trailing_metadata=(("x-error-detail-bin", to_detail(err).SerializeToString()),),
    )


@dataclass
class ScriptedRouter(router_pb2_grpc.RouterServicer):
    """Implements ``gateway.router.v1.Router``; each test scripts the answers it needs.

    ``error`` (if set) aborts any call with that error; otherwise ``Complete``
    echoes the request body inside a JSON envelope and ``StreamComplete``
    yields ``stream_events`` (a ``None`` item means "hang until cancelled").
    """

    error: GatewayError | None = None
    stream_events: list[router_pb2.StreamEvent | None] = field(default_factory=list)
    models: list[router_pb2.ModelInfo] = field(default_factory=list)
    calls: list[tuple[router_pb2.CompleteRequest, dict[str, str]]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append((request, metadata))

    async def Complete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CompleteResponse:
        self._record(request, context)
        if self.error is not None:
            await abort(context, self.error)
        route = router_pb2.RouteInfo(
            provider="fake", deployment="fake/mock", attempts=2, upstream_ms=7
        )
        return router_pb2.CompleteResponse(
            body=b'{"echo":' + request.body + b"}", route=route, usage=types_pb2.Usage()
        )

    async def StreamComplete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        self._record(request, context)
        if self.error is not None:
            await abort(context, self.error)
        try:
            for event in self.stream_events:
                if event is None:
                    await asyncio.Event().wait()
                yield event
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        return router_pb2.ListModelsResponse(models=self.models)


@dataclass
class RouterServer:
    servicer: ScriptedRouter
    health: health.aio.HealthServicer
    addr: str

    async def set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)


async def seed_keys(url: str) -> dict[str, str]:
    """Create project ``test`` with ``KEYS``; returns name -> key id."""
    engine = db.create_engine(url)
    ids: dict[str, str] = {}
    try:
        async with db.make_sessionmaker(engine)() as session:
            project = await repo.ensure_project(session=session, name="test")
            for name, (key, scopes, expires_at, revoked) in KEYS.items():
                row = await repo.create_api_key(
                    session=session,
                    project_id=project.id,
                    data=ApiKeyCreate(name=name, scopes=scopes, expires_at=expires_at),
                    key=key,
                    key_hash=hash_api_key(SECRET.encode(), key),
                )
                if revoked:
                    row.revoked_at = datetime.now(UTC) - timedelta(days=1)
                    session.add(row)
                    await session.commit()
                ids[name] = row.id
    finally:
        await engine.dispose()
    return ids


@dataclass
class Edge:
    """A running edge app and an HTTP client bound to it."""

    app: FastAPI
    client: httpx.AsyncClient
    key_ids: dict[str, str]


@contextlib.asynccontextmanager
async def serve_router(servicer: ScriptedRouter) -> AsyncIterator[RouterServer]:
    """``servicer`` on a grpc.aio server on a free loopback port, health SERVING."""
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(servicer, server)
    health_servicer = add_health(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health_servicer)
    try:
        yield RouterServer(servicer, health_servicer, f"127.0.0.1:{port}")
    finally:
        await server.stop(grace=None)
