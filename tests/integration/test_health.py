"""Health and readiness of every service, over the interfaces operators use."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import nats
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.stack import Stack

pytestmark = pytest.mark.integration


def test_edge_liveness_and_readiness(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{base_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text


async def test_billing_sessions_and_rag_answer_health_over_nats(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        for service in ("billing", "sessions", "rag"):
            reply = await nc.request(f"health.{service}", b"", timeout=5)
            assert orjson.loads(reply.data) == {"service": service, "status": "ok"}
    finally:
        await nc.close()


async def test_router_serves_grpc_health(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.ports.router}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await asyncio.wait_for(stub.Check(health_pb2.HealthCheckRequest()), 5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_are_exported(stack: Stack, base_url: str, api_key: str) -> None:
    httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mock-chat", "messages": [{"role": "user", "content": "count me"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    ).raise_for_status()
    edge = httpx.get(f"{base_url}/metrics", timeout=5).text
    assert "switchyard_gateway_overhead_seconds" in edge
    router = httpx.get(f"http://127.0.0.1:{stack.config.ports.router_metrics}/metrics", timeout=5)
    assert "switchyard_router" in router.text
