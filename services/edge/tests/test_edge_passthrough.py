"""Bearer passthrough at the edge: a provider key as the bearer, on opted-in providers only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge import EdgeSettings
from edge.pricebook import PriceBook
from gateway.router.v1 import router_pb2

from .support import Edge, RouterServer, auth, chunk_event, route_event, usage_event

pytestmark = pytest.mark.timeout(30)

PROVIDER_KEY = "sk-proj-passthrough-0123456789abcdef"
BEARER = {"authorization": f"Bearer {PROVIDER_KEY}"}
CATALOG = """
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  pass: {kind: openai, base_url: "http://127.0.0.1:9/v1", byok_passthrough: true}
  pass-b: {kind: openai, base_url: "http://127.0.0.1:9/v1", byok_passthrough: true}
models:
  mock-chat:
    deployments: [{provider: fake, model: mock-chat}]
    prices: {input: "0.000001", output: "0.000002"}
  mock-pass:
    aliases: [pass-alias]
    deployments: [{provider: pass, model: mock-chat}, {provider: pass-b, model: mock-chat}]
    prices: {input: "0.000001", output: "0.000002"}
    capabilities: [chat, responses, streaming]
  mock-pass-embed:
    deployments: [{provider: pass, model: mock-embed}]
    capabilities: [embeddings]
  mixed:
    deployments: [{provider: pass, model: mock-chat}, {provider: fake, model: mock-chat}]
"""


def _chat(model: str, *extra: str) -> bytes:
    fields = "".join(f",{item}" for item in extra)
    return (f'{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]{fields}}}').encode()


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return path


@pytest.fixture
def settings(settings: EdgeSettings, catalog_path: Path) -> EdgeSettings:
    """The suite's settings on a catalog with passthrough providers."""
    return settings.model_copy(update={"catalog_path": catalog_path})


# Each edge test starts an edge (about a second), so cases share one where they can.


async def test_provider_key_as_bearer_reaches_the_router_call_only(
    edge: Edge, router: RouterServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for model in ("mock-pass", "pass-alias", "pass:mixed", "@pass/mixed"):
        body = _chat(model)
        resp = await edge.client.post("/v1/chat/completions", content=body, headers=BEARER)
        assert resp.status_code == 200, (model, resp.text)
        request, metadata = router.servicer.calls[-1]
        assert request.provider_key == PROVIDER_KEY
        assert request.project_id == "byok-passthrough" and request.api_key_id == ""
        assert list(request.credentials) == [] and request.budget_lease_id == ""
        assert request.body == body and request.model == model
        assert PROVIDER_KEY not in str(metadata) + caplog.text + resp.text + str(resp.headers)


async def test_streams_and_embeddings_pass_through_too(edge: Edge, router: RouterServer) -> None:
    router.servicer.stream_events = [route_event(), chunk_event(b'{"a":1}'), usage_event()]
    streamed = await edge.client.post(
        "/v1/chat/completions", content=_chat("mock-pass", '"stream":true'), headers=BEARER
    )
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    embedded = await edge.client.post(
        "/v1/embeddings", content=b'{"model":"mock-pass-embed","input":"x"}', headers=BEARER
    )
    assert embedded.status_code == 200
    assert [call.provider_key for call, _ in router.servicer.calls] == [PROVIDER_KEY] * 2
    assert router.servicer.calls[-1][0].operation == router_pb2.OPERATION_EMBEDDINGS


async def test_a_model_not_served_by_passthrough_providers_only_is_401(
    edge: Edge, router: RouterServer
) -> None:
    for model in (
        "mock-chat",
        "mixed",  # one deployment is not on a passthrough provider
        "fake:mixed",
        "@fake/mock-pass",  # a provider that does not serve the model
        "pass:mock-chat",
        "nope",
        "nope:x",
    ):
        resp = await edge.client.post("/v1/chat/completions", content=_chat(model), headers=BEARER)
        assert resp.status_code == 401, model
        assert resp.json()["error"]["code"] == "invalid_api_key"
        assert PROVIDER_KEY not in resp.text
    assert router.servicer.calls == []


async def test_bearers_that_are_never_passed_through(edge: Edge, router: RouterServer) -> None:
    cases = [
        (auth("revoked"), "api_key_revoked"),
        (auth("expired"), "api_key_expired"),
        # Shaped like a gateway key: a deleted or mistyped one, never sent to a provider.
        ({"authorization": "Bearer sk-sy-deleted-0123456789abcdefghij"}, "invalid_api_key"),
        # X-Provider-Key says the bearer was meant as a gateway key.
        ({**BEARER, "x-provider-key": "sk-proj-other-key-0123"}, "invalid_api_key"),
        ({"authorization": "Bearer " + "k" * 4097}, "invalid_api_key"),
    ]
    for headers, code in cases:
        resp = await edge.client.post(
            "/v1/chat/completions", content=_chat("mock-pass"), headers=headers
        )
        assert resp.status_code == 401, code
        assert resp.json()["error"]["code"] == code
    assert router.servicer.calls == []


async def test_an_unparsable_body_is_401_for_a_provider_key_and_400_for_a_gateway_key(
    edge: Edge, router: RouterServer
) -> None:
    bad = b'{"model":"mock-pass","messages":"not a list"}'
    assert (
        await edge.client.post("/v1/chat/completions", content=bad, headers=BEARER)
    ).status_code == 401
    assert (
        await edge.client.post("/v1/chat/completions", content=bad, headers=auth())
    ).status_code == 400


async def test_gateway_keys_on_passthrough_models_keep_the_gateways_own_credentials(
    edge: Edge, router: RouterServer
) -> None:
    resp = await edge.client.post(
        "/v1/chat/completions", content=_chat("mock-pass"), headers=auth()
    )
    assert resp.status_code == 200
    request, _ = router.servicer.calls[-1]
    assert request.provider_key == "" and request.api_key_id == edge.key_ids["all"]


async def test_a_provider_key_opens_no_other_route(edge: Edge) -> None:
    for method, path in (
        ("GET", "/v1/models"),
        ("GET", "/v1/models/mock-pass"),
        ("GET", "/v1/responses/resp_1"),
        ("DELETE", "/v1/responses/resp_1"),
        ("GET", "/v1/responses/resp_1/input_items"),
        ("GET", "/admin/projects"),
    ):
        resp = await edge.client.request(method, path, headers=BEARER)
        assert resp.status_code == 401, path


async def test_responses_pass_through_without_chains_or_storage(
    edge: Edge, router: RouterServer
) -> None:
    for body in (
        b'{"model":"mock-pass","input":"hi"}',
        b'{"model":"mock-pass","input":"hi","store":false}',
    ):
        resp = await edge.client.post("/v1/responses", content=body, headers=BEARER)
        assert resp.status_code == 200, resp.text
        request, _ = router.servicer.calls[-1]
        assert request.body == body and request.provider_key == PROVIDER_KEY


async def test_responses_that_need_the_gateways_state_are_400(
    edge: Edge, router: RouterServer
) -> None:
    for extra, param in (
        ('"previous_response_id":"resp_1"', "previous_response_id"),
        ('"store":true', "store"),
    ):
        body = f'{{"model":"mock-pass","input":"hi",{extra}}}'.encode()
        resp = await edge.client.post("/v1/responses", content=body, headers=BEARER)
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == param
        assert resp.json()["error"]["code"] == "passthrough_unsupported"
        # Only a passthrough model gets that far: any other model is the unknown key's 401.
        other = body.replace(b"mock-pass", b"mock-chat")
        resp = await edge.client.post("/v1/responses", content=other, headers=BEARER)
        assert resp.status_code == 401
    assert router.servicer.calls == []


def test_the_price_book_knows_which_models_pass_through(catalog_path: Path) -> None:
    book = PriceBook(catalog_path, default_max_output_tokens=1)
    assert book.passthrough_possible()
    passing = ["mock-pass", "pass-alias", "pass:mixed", "@pass-b/mock-pass", "mock-pass-embed"]
    assert all(book.passthrough_only(model) for model in passing)
    refused = ["mock-chat", "mixed", "fake:mixed", "pass:mock-chat", "pass:nope", "nope"]
    assert not any(book.passthrough_only(model) for model in refused)


def test_without_passthrough_providers_nothing_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.replace("byok_passthrough: true", "byok_passthrough: false"))
    book = PriceBook(path, default_max_output_tokens=1)
    assert not book.passthrough_possible()
    assert not book.passthrough_only("mock-pass")
