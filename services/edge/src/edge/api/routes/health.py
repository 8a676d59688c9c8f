"""Operational endpoints (no auth): liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from gateway_common import db

from ..deps import StateDep

__all__ = ["router"]

router = APIRouter(tags=["ops"])

_CHECK_TIMEOUT_S = 1.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def _database_ok(state: StateDep) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            return await db.ping(state.engine)
    except TimeoutError:
        return False


@router.get("/readyz", response_model=None)
async def readyz(state: StateDep) -> dict[str, str] | Response:
    """Readiness: 200 only when NATS, the router (gRPC health) and the database all answer,
    and the edge is not shutting down."""
    if state.drain.draining:
        body = orjson.dumps({"status": "unavailable", "checks": {"shutting_down": True}})
        return Response(body, status_code=503, media_type="application/json")
    router_ok, database_ok = await asyncio.gather(
        state.router.serving(timeout_s=_CHECK_TIMEOUT_S), _database_ok(state)
    )
    checks = {"nats": state.nats.is_connected, "router": router_ok, "database": database_ok}
    if all(checks.values()):
        return {"status": "ok"}
    body = orjson.dumps({"status": "unavailable", "checks": checks})
    return Response(body, status_code=503, media_type="application/json")


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition of the edge's metrics."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
