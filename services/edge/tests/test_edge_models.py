"""GET /v1/models and /v1/models/{id} from the router's catalog."""

from __future__ import annotations

import pytest

from gateway.router.v1 import router_pb2

from .support import Edge, RouterServer, auth

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def catalog(router: RouterServer) -> None:
    router.servicer.models = [
        router_pb2.ModelInfo(
            id="mock-chat",
            owned_by="switchyard",
            created=1700000000,
            provider="fake",
            context_window=8192,
            max_output_tokens=1024,
            input_price_per_token="0.000001",
            output_price_per_token="0.000002",
            capabilities=["chat", "streaming"],
            aliases=["chat-default"],
        ),
        router_pb2.ModelInfo(id="openai/gpt-x", owned_by="openai", provider="openai"),
    ]


async def test_list(edge: Edge) -> None:
    resp = await edge.client.get("/v1/models", headers=auth("embed"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert body["data"][0] == {
        "id": "mock-chat",
        "object": "model",
        "created": 1700000000,
        "owned_by": "switchyard",
        "provider": "fake",
        "context_window": 8192,
        "max_output_tokens": 1024,
        "pricing": {"input": "0.000001", "output": "0.000002", "cached_input": None},
        "capabilities": ["chat", "streaming"],
        "aliases": ["chat-default"],
    }
    assert body["data"][1]["pricing"] == {"input": "0", "output": "0", "cached_input": None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mock-chat", "mock-chat"), ("chat-default", "mock-chat"), ("openai/gpt-x", "openai/gpt-x")],
)
async def test_retrieve(edge: Edge, name: str, expected: str) -> None:
    resp = await edge.client.get(f"/v1/models/{name}", headers=auth())
    assert resp.status_code == 200
    assert resp.json()["id"] == expected


async def test_unknown_model_is_404(edge: Edge) -> None:
    resp = await edge.client.get("/v1/models/nope", headers=auth())
    assert resp.status_code == 404
    assert resp.json()["error"] == {
        "message": "The model 'nope' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


async def test_requires_a_key(edge: Edge) -> None:
    assert (await edge.client.get("/v1/models")).status_code == 401
