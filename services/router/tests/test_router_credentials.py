"""CompleteRequest fields 8-11 through the servicer: provider keys, lease, endpoint, context.

A real grpc.aio server and client in-process; only the providers are faked
(``httpx.MockTransport``). Provider ``alpha`` (two deployments, configured key
from its ``api_key_env``) and ``beta`` (no configured key) both serve model
``multi``; a host listed in ``Providers.down`` answers 500 and echoes the key it
was sent, as some providers do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.catalog import Catalog, ProviderEntry
from gateway_common.events import UsageRecorded
from gateway_common.grpc import ContextInterceptor
from router.catalog import LiveCatalog
from router.failover import Failover, RouteInfo
from router.handlers import ERROR_DETAIL_KEY, RouterServicer, decode
from router.metrics import RouterMetrics
from router.providers.base import Operation, ProviderAdapter, ProviderRequest, Usage
from router.providers.registry import build_adapters
from router.service import RouterService
from router.usage import Payer, Status, usage_event

CATALOG = """
version: 1
providers:
  alpha: {kind: openai, base_url: "https://alpha.test/v1", api_key_env: ALPHA_KEY}
  beta: {kind: openai, base_url: "https://beta.test/v1"}
models:
  multi:
    deployments:
      - {provider: alpha, model: alpha-chat}
      - {provider: alpha, model: alpha-chat-2}
      - {provider: beta, model: beta-chat}
    prices: {input: "0.00000015", output: "0.0000006", cached_input: "0.000000075",
             reasoning: "0.0000012"}
    capabilities: [chat, responses, streaming]
  beta-first:
    deployments:
      - {provider: beta, model: beta-chat}
      - {provider: alpha, model: alpha-chat}
  embed:
    deployments: [{provider: beta, model: beta-embed}]
    prices: {input: "0.00000002"}
    capabilities: [embeddings]
"""
CONFIGURED = "sk-configured-alpha"
MANAGED = {"alpha": "sk-managed-alpha-0123456789", "beta": "sk-managed-beta-0123456789"}
OWN = "sk-caller-own-0123456789"
#: prompt 100 (40 cached), completion 30 (10 reasoning)
USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 30,
    "total_tokens": 130,
    "prompt_tokens_details": {"cached_tokens": 40},
    "completion_tokens_details": {"reasoning_tokens": 10},
}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


_SSE = _sse(
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hi"}),
    _chunk({}, "stop"),
    {**_chunk({}), "choices": [], "usage": USAGE},
)
#: Usage on a content chunk that is not the last one (some providers do that).
_SSE_EARLY_USAGE = _sse(
    _chunk({"role": "assistant", "content": ""}),
    {**_chunk({"content": "Hi"}), "usage": USAGE},
    _chunk({}, "stop"),
)


@dataclass
class Providers:
    """The faked upstreams: what each host received, and which hosts are down."""

    down: set[str] = field(default_factory=set)
    #: (host, Authorization header or None), in order
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        self.seen.append((request.url.host, auth))
        if request.url.host in self.down:
            said = f"Incorrect API key provided: {(auth or '').removeprefix('Bearer ')}"
            return httpx.Response(500, json={"error": {"message": said, "type": "server_error"}})
        if request.url.path.endswith("/embeddings"):
            embedding = {"object": "embedding", "index": 0, "embedding": [0.5]}
            return httpx.Response(
                200,
                json={"object": "list", "data": [embedding], "usage": {"prompt_tokens": 8}},
            )
        body = orjson.loads(request.content)
        if body.get("stream"):
            early = body["messages"][-1]["content"] == "early usage"
            sse = _SSE_EARLY_USAGE if early else _SSE
            return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        message = {"role": "assistant", "content": "Hello!"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "upstream-model",
                "choices": [choice],
                "usage": USAGE,
            },
        )

    def sent(self) -> list[tuple[str, str | None]]:
        return [(host.removesuffix(".test"), auth) for host, auth in self.seen]


@dataclass
class Recorder:
    """In-memory ``UsageSink`` that builds the events the publisher would publish."""

    events: list[UsageRecorded] = field(default_factory=list)

    async def record(
        self,
        payer: Payer,
        operation: Operation,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> UsageRecorded | None:
        if usage is None:
            return None
        event = usage_event(payer, operation, route, usage, status=status)
        self.events.append(event)
        return event


@dataclass
class Harness:
    stub: router_pb2_grpc.RouterStub
    providers: Providers
    recorder: Recorder
    live: LiveCatalog


@pytest.fixture
async def harness(tmp_path: Path, metrics: RouterMetrics) -> AsyncIterator[Harness]:
    providers = Providers()
    transport = httpx.MockTransport(providers)

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {"ALPHA_KEY": CONFIGURED}, reuse=reuse, transport=transport)

    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    live = LiveCatalog(path, build, metrics)
    await live.load()
    recorder = Recorder()
    server = grpc.aio.server(interceptors=[ContextInterceptor()])
    service = RouterService(live, Failover(metrics), recorder)
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(router_pb2_grpc.RouterStub(channel), providers, recorder, live)
    finally:
        await channel.close()
        await server.stop(grace=None)
        await live.aclose()


def _request(
    model: str = "multi",
    *,
    operation: int = router_pb2.OPERATION_CHAT_COMPLETIONS,
    credentials: Mapping[str, str] | None = None,
    body: dict[str, Any] | None = None,
    **fields: Any,
) -> router_pb2.CompleteRequest:
    payload = body or {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    return router_pb2.CompleteRequest(
        operation=operation,
        model=model,
        body=orjson.dumps(payload),
        request_id="req-1",
        project_id="proj-1",
        api_key_id="key-1",
        credentials=[
            router_pb2.ProviderCredential(provider=p, api_key=k)
            for p, k in (credentials or {}).items()
        ],
        **fields,
    )


def _exact(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal, parse_int=Decimal)


def _ledger_items(harness: Harness, event: UsageRecorded) -> list[dict[str, Any]]:
    """What billing writes for ``event``: its PriceIndex over the same catalog."""
    return [
        {
            "sku": i.sku,
            "amount": i.amount,
            "unit_price": i.unit_price,
            "quantity": i.quantity,
            "description": i.description,
        }
        for i in harness.live.table.prices.price(event)
    ]


async def _stream(harness: Harness, request: router_pb2.CompleteRequest) -> list[Any]:
    """The call's events, each batch of chunks spread out as one ``chunk`` event per chunk."""
    events: list[router_pb2.StreamEvent] = []
    async for event in harness.stub.StreamComplete(request, timeout=5):
        if event.WhichOneof("event") == "chunks":
            events.extend(router_pb2.StreamEvent(chunk=c) for c in event.chunks.chunks)
        else:
            events.append(event)
    return events


# -- managed credentials -------------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_each_attempt_presents_the_managed_key_of_its_own_provider(
    harness: Harness,
) -> None:
    harness.providers.down.add("alpha.test")

    reply = await harness.stub.Complete(_request(credentials=MANAGED), timeout=5)

    assert (reply.route.provider, reply.route.attempts) == ("beta", 3)
    assert harness.providers.sent()[:3] == [
        ("alpha", f"Bearer {MANAGED['alpha']}"),
        ("alpha", f"Bearer {MANAGED['alpha']}"),
        ("beta", f"Bearer {MANAGED['beta']}"),
    ]
    [event] = harness.recorder.events
    assert event.byok is False


@pytest.mark.timeout(10)
async def test_a_provider_without_a_managed_key_keeps_its_configured_one(
    harness: Harness,
) -> None:
    only_beta = {"beta": MANAGED["beta"]}
    await harness.stub.Complete(_request(credentials=only_beta), timeout=5)
    await harness.stub.Complete(_request("@beta/multi"), timeout=5)

    assert harness.providers.sent() == [
        ("alpha", f"Bearer {CONFIGURED}"),  # from ALPHA_KEY, as before
        ("beta", None),  # neither a managed nor a configured key: none, as before
    ]


# -- BYOK stays on one provider ------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_byok_fails_over_only_within_the_primary_provider(harness: Harness) -> None:
    harness.providers.down.add("alpha.test")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.Complete(_request(provider_key=OWN, credentials=MANAGED), timeout=5)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    hosts = {host for host, _ in harness.providers.sent()}
    assert hosts == {"alpha"}  # beta never saw the caller's key (nor anything else)
    assert {auth for _, auth in harness.providers.sent()} == {f"Bearer {OWN}"}
    assert harness.recorder.events == []


@pytest.mark.timeout(10)
async def test_byok_stream_never_reaches_another_provider(harness: Harness) -> None:
    harness.providers.down.add("beta.test")
    request = _request("beta-first", provider_key=OWN, body=_stream_body("beta-first"))

    with pytest.raises(grpc.aio.AioRpcError):
        await _stream(harness, request)

    assert {host for host, _ in harness.providers.sent()} == {"beta"}


@pytest.mark.timeout(10)
async def test_byok_goes_to_the_provider_a_prefix_forced_and_is_billed_as_byok(
    harness: Harness,
) -> None:
    reply = await harness.stub.Complete(_request("@beta/multi", provider_key=OWN), timeout=5)

    assert reply.route.provider == "beta"
    assert harness.providers.sent() == [("beta", f"Bearer {OWN}")]
    [event] = harness.recorder.events
    assert event.byok is True


# -- lease and endpoint --------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
async def test_lease_and_endpoint_ride_on_the_usage_event(
    harness: Harness, streaming: bool
) -> None:
    fields = {"budget_lease_id": "lease-7", "endpoint": "support-bot"}
    if streaming:
        await _stream(harness, _request(body=_stream_body("multi"), **fields))
    else:
        await harness.stub.Complete(_request(**fields), timeout=5)

    [event] = harness.recorder.events
    assert (event.budget_lease_id, event.endpoint) == ("lease-7", "support-bot")
    assert (event.request_id, event.project_id, event.api_key_id) == ("req-1", "proj-1", "key-1")


# -- generation_context --------------------------------------------------------------------


def _stream_body(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        **extra,
    }


@pytest.mark.timeout(10)
async def test_without_the_flag_the_body_is_passed_through_byte_for_byte(
    harness: Harness,
) -> None:
    reply = await harness.stub.Complete(_request(), timeout=5)
    assert b"generation_context" not in reply.body
    assert orjson.loads(reply.body)["id"] == "chatcmpl-1"

    events = await _stream(harness, _request(body=_stream_body("multi")))
    assert not any(b"generation_context" in e.chunk for e in events)


@pytest.mark.timeout(10)
async def test_unary_chat_carries_the_ledgers_line_items(harness: Harness) -> None:
    reply = await harness.stub.Complete(_request(include_generation_context=True), timeout=5)

    body = _exact(reply.body)
    [event] = harness.recorder.events
    context = body.pop("generation_context")
    assert context == {"generated_usage": _ledger_items(harness, event), "runned_functions": []}
    skus = [item["sku"] for item in context["generated_usage"]]
    assert skus == [
        "inference.chat_completions.in",
        "inference.chat_completions.in.cached",
        "inference.chat_completions.out",
        "inference.chat_completions.out.reasoning",
    ]
    cached = context["generated_usage"][1]
    assert (cached["quantity"], cached["unit_price"]) == (40, Decimal("0.000000075"))
    assert body["choices"][0]["message"]["content"] == "Hello!"  # the rest is untouched


@pytest.mark.timeout(10)
async def test_embeddings_and_responses_carry_it_too(harness: Harness) -> None:
    embed = _request(
        "embed",
        operation=router_pb2.OPERATION_EMBEDDINGS,
        body={"model": "embed", "input": "hello"},
        include_generation_context=True,
    )
    reply = await harness.stub.Complete(embed, timeout=5)
    [item] = _exact(reply.body)["generation_context"]["generated_usage"]
    assert (item["sku"], item["quantity"]) == ("inference.embeddings.in", 8)

    responses = _request(
        operation=router_pb2.OPERATION_RESPONSES,
        body={"model": "multi", "input": "Hi"},
        include_generation_context=True,
    )
    reply = await harness.stub.Complete(responses, timeout=5)
    body = _exact(reply.body)
    assert body["object"] == "response"
    event = harness.recorder.events[-1]
    assert body["generation_context"]["generated_usage"] == _ledger_items(harness, event)
    assert body["generation_context"]["generated_usage"][0]["sku"] == "inference.responses.in"


@pytest.mark.timeout(10)
async def test_a_chat_stream_carries_it_on_its_finish_chunk_and_adds_none(
    harness: Harness,
) -> None:
    """Without include_usage the client gets the provider's chunks, and no ``choices: []`` one."""
    plain = await _stream(harness, _request(body=_stream_body("multi")))
    events = await _stream(
        harness, _request(body=_stream_body("multi"), include_generation_context=True)
    )

    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["route"] + ["chunk"] * 3 + ["usage"]
    assert [e.chunk for e in events[1:-2]] == [e.chunk for e in plain[1:-2]]
    last = _exact(events[-2].chunk)
    context = last.pop("generation_context")
    assert last == _exact(plain[-2].chunk)
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "stop"
    event = harness.recorder.events[-1]
    assert context == {"generated_usage": _ledger_items(harness, event), "runned_functions": []}
    assert all(orjson.loads(e.chunk)["choices"] for e in events if e.WhichOneof("event") == "chunk")


@pytest.mark.timeout(10)
async def test_the_usage_chunk_the_client_asked_for_carries_it_last(harness: Harness) -> None:
    body = _stream_body("multi", stream_options={"include_usage": True})
    events = await _stream(harness, _request(body=body, include_generation_context=True))

    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["route"] + ["chunk"] * 4 + ["usage"]
    last = _exact(events[-2].chunk)
    [event] = harness.recorder.events
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 100
    assert last["generation_context"]["generated_usage"] == _ledger_items(harness, event)
    assert orjson.loads(events[-3].chunk)["choices"][0]["finish_reason"] == "stop"
    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    assert [c["choices"] == [] for c in chunks] == [False, False, False, True]


@pytest.mark.timeout(10)
async def test_a_usage_chunk_that_is_not_the_last_keeps_its_place(harness: Harness) -> None:
    body = _stream_body("multi", messages=[{"role": "user", "content": "early usage"}])
    body["stream_options"] = {"include_usage": True}
    events = await _stream(harness, _request(body=body, include_generation_context=True))

    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
    ]
    assert chunks[1]["usage"]["prompt_tokens"] == 100
    assert "generation_context" not in chunks[1]  # content with usage is not held back
    assert "generation_context" in chunks[-1] and chunks[-1]["choices"][0]["finish_reason"]


@pytest.mark.timeout(10)
async def test_responses_stream_puts_it_on_response_completed(harness: Harness) -> None:
    request = _request(
        operation=router_pb2.OPERATION_RESPONSES,
        body={"model": "multi", "input": "Hi", "stream": True},
        include_generation_context=True,
    )
    events = await _stream(harness, request)

    chunks = [_exact(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    assert all("generation_context" not in c for c in chunks[:-1])
    assert chunks[-1]["type"] == "response.completed"
    [event] = harness.recorder.events
    assert chunks[-1]["response"]["generation_context"]["generated_usage"] == _ledger_items(
        harness, event
    )
    assert events[-1].WhichOneof("event") == "usage"


# -- keys stay secret ----------------------------------------------------------------------


def test_keys_are_not_in_the_call_or_provider_request_reprs() -> None:
    call = decode(_request(provider_key=OWN, credentials=MANAGED))
    request = ProviderRequest("chat.completions", {}, "m", provider_key=MANAGED["alpha"])

    for text in (repr(call), str(call), repr(request), repr(call.payer)):
        assert OWN not in text and not any(key in text for key in MANAGED.values())
    assert call.credentials == MANAGED and call.provider_key == OWN


@pytest.mark.timeout(10)
async def test_keys_a_provider_echoes_stay_out_of_logs_errors_and_events(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.providers.down.add("alpha.test")
    with caplog.at_level(logging.DEBUG):
        reply = await harness.stub.Complete(_request(credentials=MANAGED), timeout=5)
        harness.providers.down.add("beta.test")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub.Complete(_request(credentials=MANAGED), timeout=5)

    assert reply.route.provider == "beta"
    assert "Incorrect API key provided: [redacted]" in caplog.text  # the echo was there
    trailers = dict(caught.value.trailing_metadata() or ())
    sent_back = caught.value.details().encode() + trailers[ERROR_DETAIL_KEY]
    for key in MANAGED.values():
        assert key not in caplog.text
        assert key.encode() not in sent_back
        assert all(key.encode() not in event.to_bytes() for event in harness.recorder.events)


# -- own endpoint (a gateway's credential, field 15) ---------------------------------------


@pytest.mark.timeout(10)
async def test_own_endpoint_sends_the_model_verbatim_on_the_credential_and_bills_byok(
    harness: Harness,
) -> None:
    request = _request(
        "my-finetune",  # not in the catalog
        credentials={"beta": MANAGED["beta"]},
        own_endpoint=True,
        include_generation_context=True,
    )
    reply = await harness.stub.Complete(request, timeout=5)

    assert (reply.route.provider, reply.route.provider_model) == ("beta", "my-finetune")
    assert harness.providers.sent() == [("beta", f"Bearer {MANAGED['beta']}")]
    [event] = harness.recorder.events
    assert (event.model, event.byok, event.own_endpoint) == ("my-finetune", True, True)
    assert orjson.loads(reply.body)["generation_context"]["generated_usage"] == []
    assert harness.live.table.prices.price(event) == []  # no model tokens priced


@pytest.mark.timeout(10)
async def test_own_endpoint_needs_exactly_one_credential(harness: Harness) -> None:
    for credentials in ({}, MANAGED):
        request = _request("my-finetune", credentials=credentials, own_endpoint=True)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub.Complete(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.providers.sent() == []
