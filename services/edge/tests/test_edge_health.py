"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import dataclasses

import pytest

from gateway_common import db

from .support import Edge, RouterServer, auth, free_port

pytestmark = pytest.mark.timeout(30)


async def test_healthz(edge: Edge) -> None:
    resp = await edge.client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def test_ready_when_everything_answers(edge: Edge) -> None:
    resp = await edge.client.get("/readyz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def test_not_ready_when_router_is_not_serving(edge: Edge, router: RouterServer) -> None:
    await router.set_health(False)
    resp = await edge.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "unavailable",
        "checks": {"nats": True, "router": False, "database": True},
    }


async def test_not_ready_without_database(edge: Edge) -> None:
    dead = db.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    edge.app.state.edge = dataclasses.replace(edge.app.state.edge, engine=dead)
    try:
        resp = await edge.client.get("/readyz")
    finally:
        await dead.dispose()
    assert resp.status_code == 503
    assert resp.json()["checks"] == {"nats": True, "router": True, "database": False}


async def test_metrics(edge: Edge) -> None:
    await edge.client.post(
        "/v1/chat/completions",
        content=b'{"model":"m","messages":[{"role":"user","content":"x"}]}',
        headers=auth(),
    )
    await edge.client.post("/v1/nope", headers=auth())
    resp = await edge.client.get("/metrics")
    assert resp.status_code == 200
    text = resp.text
    assert (
        'switchyard_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    assert (
        'switchyard_http_requests_total{method="POST",route="unmatched",status="404"} 1.0' in text
    )
    assert 'switchyard_gateway_overhead_seconds_count{operation="chat.completions"} 1.0' in text
