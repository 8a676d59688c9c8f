"""BYOK at the edge: ``X-Provider-Key`` reaches the router call and nothing else."""

from __future__ import annotations

import logging

import pytest

from edge.router_client import CallContext
from gateway.router.v1 import router_pb2

from .support import Edge, RouterServer, auth, chunk_event, route_event, usage_event

pytestmark = pytest.mark.timeout(30)

CHAT = b'{"model":"mock-chat","messages":[{"role":"user","content":"hi"}]}'
EMBED = b'{"model":"mock-embed","input":"hi"}'
USER_KEY = "sk-proj-users-own-key-0123456789"


@pytest.mark.parametrize(
    ("path", "body", "op"),
    [
        ("/v1/chat/completions", CHAT, router_pb2.OPERATION_CHAT_COMPLETIONS),
        ("/v1/embeddings", EMBED, router_pb2.OPERATION_EMBEDDINGS),
    ],
    ids=["chat", "embeddings"],
)
async def test_provider_key_header_becomes_the_calls_provider_key(
    edge: Edge,
    router: RouterServer,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
    op: router_pb2.Operation.ValueType,
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await edge.client.post(
        path, content=body, headers={**auth(), "X-Provider-Key": f"  {USER_KEY} "}
    )
    assert resp.status_code == 200
    request, metadata = router.servicer.calls[-1]
    assert request.operation == op
    assert request.provider_key == USER_KEY
    assert request.body == body
    assert USER_KEY not in str(metadata)
    assert USER_KEY not in caplog.text
    assert USER_KEY not in resp.text and USER_KEY not in str(resp.headers)


async def test_streams_carry_the_provider_key_too(edge: Edge, router: RouterServer) -> None:
    router.servicer.stream_events = [route_event(), chunk_event(b'{"a":1}'), usage_event()]
    body = CHAT.replace(b'"model"', b'"stream":true,"model"')
    resp = await edge.client.post(
        "/v1/chat/completions", content=body, headers={**auth(), "x-provider-key": USER_KEY}
    )
    assert resp.status_code == 200 and resp.text.endswith("data: [DONE]\n\n")
    assert router.servicer.calls[-1][0].provider_key == USER_KEY


async def test_without_the_header_the_call_has_no_provider_key(
    edge: Edge, router: RouterServer
) -> None:
    assert (await edge.client.post("/v1/chat/completions", content=CHAT, headers=auth())).is_success
    assert router.servicer.calls[-1][0].provider_key == ""


@pytest.mark.parametrize(
    "value", ["", "   ", "two tokens", "k\u00e9y", "x" * 4097], ids=lambda v: repr(v[:12])
)
async def test_malformed_provider_key_is_400_without_echoing_it(
    edge: Edge, router: RouterServer, value: str
) -> None:
    calls = len(router.servicer.calls)
    resp = await edge.client.post(
        "/v1/chat/completions",
        content=CHAT,
        headers={**auth(), "x-provider-key": value.encode("utf-8")},  # type: ignore[dict-item]
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid_provider_key"
    assert "X-Provider-Key" in error["message"]
    if value.strip():
        assert value.strip() not in error["message"]
    assert len(router.servicer.calls) == calls


async def test_provider_key_does_not_bypass_the_gateway_key(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/chat/completions", content=CHAT, headers={"x-provider-key": USER_KEY}
    )
    assert resp.status_code == 401


def test_call_context_repr_hides_the_provider_key() -> None:
    ctx = CallContext(request_id="r", project_id="p", api_key_id="k", provider_key=USER_KEY)
    assert USER_KEY not in repr(ctx)
