"""POST /v1/chat/completions and /v1/embeddings through the real app and a scripted router."""

from __future__ import annotations

import httpx
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    ModelNotFound,
    ProviderUnavailable,
    RateLimited,
)

from .support import Edge, RouterServer, auth, batch_event, chunk_event, route_event, usage_event

pytestmark = pytest.mark.timeout(30)

CHAT = b'{"model":"mock-chat","messages":[{"role":"user","content":"hi"}],"x_future_field":[1,2]}'


async def test_non_stream_passes_bytes_through_both_ways(edge: Edge, router: RouterServer) -> None:
    resp = await edge.client.post(
        "/v1/chat/completions", content=CHAT, headers={**auth(), "x-request-id": "req-123"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content == b'{"echo":' + CHAT + b"}"
    assert resp.headers["x-request-id"] == "req-123"
    assert resp.headers["x-switchyard-provider"] == "fake"
    assert resp.headers["x-switchyard-deployment"] == "fake/mock"
    assert resp.headers["x-switchyard-attempts"] == "2"
    assert float(resp.headers["x-switchyard-overhead-ms"]) >= 0

    request, metadata = router.servicer.calls[-1]
    assert request.body == CHAT
    assert request.operation == router_pb2.OPERATION_CHAT_COMPLETIONS
    assert request.model == "mock-chat"
    assert request.request_id == "req-123" == metadata["x-request-id"]
    assert request.api_key_id == edge.key_ids["all"]
    assert request.project_id


async def test_insane_request_id_is_replaced(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/chat/completions", content=CHAT, headers={**auth(), "x-request-id": "bad id <script>"}
    )
    assert resp.status_code == 200
    assert len(resp.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (
            ModelNotFound("The model 'nope' does not exist.", param="model"),
            404,
            "invalid_request_error",
            "model_not_found",
        ),
        (RateLimited("Slow down."), 429, "rate_limit_error", "rate_limit_exceeded"),
        (ProviderUnavailable("upstream 503"), 502, "api_error", "provider_unavailable"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_router_errors_keep_their_status(
    edge: Edge, router: RouterServer, error, status, type_, code, stream: bool
) -> None:
    router.servicer.error = error
    body = orjson.dumps(
        {"model": "nope", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    )
    resp = await edge.client.post("/v1/chat/completions", content=body, headers=auth())
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {
        "error": {"message": error.message, "type": type_, "param": error.param, "code": code}
    }


async def test_sse_framing_ends_with_done(edge: Edge, router: RouterServer) -> None:
    router.servicer.stream_events = [
        route_event(provider="p1", deployment="p1/d"),
        chunk_event(b'{"id":"c","choices":[{"delta":{"content":"a"}}]}'),
        chunk_event(b'{"id":"c","choices":[{"delta":{"content":"b"}}]}'),
        usage_event(),
    ]
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    resp = await edge.client.post("/v1/chat/completions", content=body, headers=auth())
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-switchyard-provider"] == "p1"
    assert resp.headers["x-switchyard-deployment"] == "p1/d"
    assert resp.content == (
        b'data: {"id":"c","choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"id":"c","choices":[{"delta":{"content":"b"}}]}\n\n'
        b"data: [DONE]\n\n"
    )


async def test_a_batch_of_chunks_goes_out_as_one_send(edge: Edge, router: RouterServer) -> None:
    chunks = [b'{"id":"c","choices":[{"delta":{"content":"%d"}}]}' % n for n in range(3)]
    router.servicer.stream_events = [route_event(), batch_event(*chunks), usage_event()]
    bodies: list[bytes] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                bodies.append(message["body"])
            await send(message)

        await edge.app(scope, receive, record)

    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    transport = httpx.ASGITransport(app=recording)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        resp = await client.post("/v1/chat/completions", content=body, headers=auth())
    assert resp.status_code == 200
    assert bodies == [b"".join(b"data: " + c + b"\n\n" for c in chunks), b"data: [DONE]\n\n"]


async def test_sse_in_band_error_has_no_done(edge: Edge, router: RouterServer) -> None:
    router.servicer.stream_events = [
        route_event(),
        chunk_event(b'{"n":1}'),
        router_pb2.StreamEvent(
            error={"code": "provider_unavailable", "message": "upstream broke", "http_status": 502}
        ),
    ]
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    resp = await edge.client.post("/v1/chat/completions", content=body, headers=auth())
    assert resp.status_code == 200
    frames = resp.content.split(b"\n\n")
    assert frames[0] == b'data: {"n":1}'
    assert orjson.loads(frames[1].removeprefix(b"data: ")) == {
        "error": {
            "message": "upstream broke",
            "type": "api_error",
            "param": None,
            "code": "provider_unavailable",
        }
    }
    assert frames[2:] == [b""]
    assert b"[DONE]" not in resp.content


async def test_embeddings_share_the_flow(edge: Edge, router: RouterServer) -> None:
    body = b'{"model":"mock-embed","input":["a","b"],"dimensions":4}'
    resp = await edge.client.post("/v1/embeddings", content=body, headers=auth("embed"))
    assert resp.status_code == 200
    assert resp.content == b'{"echo":' + body + b"}"
    request, _ = router.servicer.calls[-1]
    assert request.operation == router_pb2.OPERATION_EMBEDDINGS


async def test_scope_is_enforced(edge: Edge) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=CHAT, headers=auth("embed"))
    assert resp.status_code == 403
    assert resp.json()["error"]["type"] == "permission_error"
    assert resp.json()["error"]["code"] == "insufficient_scope"
