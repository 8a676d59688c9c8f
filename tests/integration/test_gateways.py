"""Seed 002's gateways over the real stack (edge, router, billing, the fake provider):
a gateway made through the admin API answers on its three paths by full id and by
``name:short``, and the fake provider's recorded request shows that the instructions,
the prefill and an overridable parameter reached it and a fixed one was not overridden;
another project's gateway is a 404; seed 002's stream ends with ``[END]``; the OpenAI SDK
with ``base_url=.../api/v1`` works; the call is in the ledger.

Every call carries a fresh marker in its user text (``helpers.fake_requests``).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import nats
import openai
import orjson
import pytest

from devtools.stack import Stack
from gateway_common import subjects
from tests.integration.helpers import extra_edge, fake_requests, ledger_entry, poll, sse_data

pytestmark = pytest.mark.timeout(120)


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


class Tenant:
    """A project made through the admin API, with a chat key."""

    def __init__(self, http: httpx.Client, stack: Stack) -> None:
        self.http, self.operator = http, _operator(stack)
        resp = http.post(
            "/admin/projects", json={"name": f"gw15-{secrets.token_hex(4)}"}, headers=self.operator
        )
        assert resp.status_code == 201, resp.text
        self.id: str = resp.json()["id"]
        resp = http.post(
            f"/admin/projects/{self.id}/keys",
            json={"name": "k", "scopes": ["chat"]},
            headers=self.operator,
        )
        assert resp.status_code == 201, resp.text
        self.key: str = resp.json()["key"]
        self.headers = {"authorization": f"Bearer {self.key}"}

    def gateway(self, **fields: Any) -> dict[str, Any]:
        resp = self.http.post(
            f"/admin/projects/{self.id}/gateways",
            json={"name": "my-gateway", "model": "mock-chat", **fields},
            headers=self.operator,
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _ask(marker: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"hi {marker}"}], **extra}


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/api/v1/chat-completions", "/api/v1/chat/completions"]
)
def test_gateway_applies_its_settings_on_every_path(
    stack: Stack, http: httpx.Client, fake_provider_url: str, path: str
) -> None:
    tenant = Tenant(http, stack)
    g = tenant.gateway(
        instructions="You are the docs bot.",
        params={"temperature": 0.2, "max_tokens": 40, "prefill": "Certainly:"},
        overridable=["temperature"],
    )
    for model in (g["id"], g["short_name"]):
        marker = secrets.token_hex(6)
        resp = http.post(
            path,
            json=_ask(marker, model, temperature=0.8, max_tokens=500, metadata={"foo": "bar"}),
            headers=tenant.headers,
        )
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["model"] == "mock-chat"
        assert answer["choices"][0]["message"]["annotations"] == []
        (seen,) = fake_requests(fake_provider_url, marker)
        body = seen["body"]
        assert body["messages"][0] == {"role": "system", "content": "You are the docs bot."}
        assert body["messages"][-1] == {"role": "assistant", "content": "Certainly:"}
        assert body["temperature"] == 0.8  # overridable: the request's value
        assert body["max_tokens"] == 40  # fixed: the request's 500 never reached the provider
        request_id = resp.headers["x-request-id"]
        entry, items = poll(lambda r=request_id: ledger_entry(stack.database_url("billing"), r))
        assert entry.project_id == tenant.id and items
        looked_up = http.get(
            f"/admin/projects/{tenant.id}/usage/requests/{request_id}", headers=tenant.operator
        )
        assert looked_up.status_code == 200, looked_up.text
        assert [e["metadata"] for e in looked_up.json()["entries"]] == [{"foo": "bar"}]


def test_another_projects_gateway_is_404_in_openai_shape(stack: Stack, http: httpx.Client) -> None:
    mine, theirs = Tenant(http, stack), Tenant(http, stack)
    g = theirs.gateway()
    for path in ("/v1/chat/completions", "/api/v1/chat-completions", "/api/v1/chat/completions"):
        for model in (g["id"], g["short_name"], "nope:0000"):
            resp = http.post(path, json=_ask("x", model), headers=mine.headers)
            assert resp.status_code == 404, resp.text
            assert resp.json()["error"]["code"] == "model_not_found"


def test_seed_path_stream_ends_with_end_and_openai_path_with_done(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    g = tenant.gateway()
    for path, end in (("/api/v1/chat-completions", "[END]"), ("/v1/chat/completions", "[DONE]")):
        with http.stream(
            "POST", path, json=_ask("s", g["short_name"], stream=True), headers=tenant.headers
        ) as resp:
            assert resp.status_code == 200
            frames = sse_data(resp.iter_lines())
        assert frames[-1] == end
        if end == "[END]":
            chunks = [orjson.loads(f) for f in frames[:-1]]
            chunks = [c for c in chunks if "generation_context" not in c or c.get("usage")]
            assert all(c["usage"] is None for c in chunks[:-1])
            assert chunks[-1]["usage"]["total_tokens"] > 0


def test_openai_sdk_with_seed_base_url(stack: Stack, http: httpx.Client, base_url: str) -> None:
    tenant = Tenant(http, stack)
    g = tenant.gateway(instructions="Be brief.")
    client = openai.OpenAI(base_url=f"{base_url}/api/v1", api_key=tenant.key, max_retries=0)
    try:
        answer = client.chat.completions.create(
            model=g["short_name"], messages=[{"role": "user", "content": "Why gateways?"}]
        )
        assert answer.model == "mock-chat" and answer.choices[0].message.content
        stream = client.chat.completions.create(
            model=g["id"], messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        client.close()


def test_routing_auto_picks_by_its_rule_and_bills_its_line_items(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    tenant = Tenant(http, stack)
    g = tenant.gateway(routing={"policy": "auto", "cheap": "mock-chat", "strong": "mock-reasoning"})
    for text, model in (("hello", "mock-chat"), ("explain why gateways help", "mock-reasoning")):
        marker = secrets.token_hex(6)
        resp = http.post(
            "/api/v1/chat-completions",
            json={"model": g["id"], "messages": [{"role": "user", "content": f"{text} {marker}"}]},
            headers=tenant.headers,
        )
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["model"] == model
        assert fake_requests(fake_provider_url, marker)[0]["body"]["model"] == model
        skus = [item["sku"] for item in answer["generation_context"]["generated_usage"]]
        assert skus[:2] == [
            "inference.resolving.routing_complexity.in",
            "inference.resolving.routing_complexity.out",
        ]
        assert answer["generation_context"]["runned_functions"] == []
        request_id = resp.headers["x-request-id"]
        _, items = poll(lambda r=request_id: ledger_entry(stack.database_url("billing"), r))
        assert {i.sku for i in items} >= {
            "inference.resolving.routing_complexity.in",
            "inference.resolving.routing_complexity.out",
        }


async def _rag(stack: Stack, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
    nc = await nats.connect(stack.nats_url)
    try:
        reply = await nc.request(subject, orjson.dumps(payload), timeout=10)
    finally:
        await nc.close()
    answer: dict[str, Any] = orjson.loads(reply.data)
    assert answer["status"] == "ok", answer
    return answer


def _collection_with_a_document(stack: Stack, project_id: str, text: str) -> tuple[str, str]:
    """A collection of ``project_id`` holding one ready document (made over rag's subjects)."""
    collection = asyncio.run(
        _rag(stack, subjects.RAG_COLLECTION_CREATE, {"project_id": project_id, "name": "kb"})
    )["collection"]["id"]
    key = {"project_id": project_id, "collection_id": collection}
    added = asyncio.run(_rag(stack, subjects.RAG_DOCUMENT_ADD, {**key, "name": "d", "text": text}))
    document = added["document"]["id"]

    def ready() -> bool | None:
        got = asyncio.run(_rag(stack, subjects.RAG_DOCUMENT_GET, {**key, "document_id": document}))
        assert got["document"]["status"] != "failed", got
        return True if got["document"]["status"] == "ready" else None

    poll(ready, timeout=60, interval=0.2)
    return collection, document


def test_a_grounded_gateway_injects_chunks_cites_them_and_bills_retrieval(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    tenant = Tenant(http, stack)
    fact = "The Switchyard lighthouse keeper is named Orla Brightwater."
    collection, document = _collection_with_a_document(stack, tenant.id, fact)
    g = tenant.gateway(
        instructions="Answer from the sources.",
        collection_id=collection,
        top_k=2,
        params={"prefill": "From the sources:"},
    )
    marker = secrets.token_hex(6)
    resp = http.post(
        "/api/v1/chat/completions",
        json=_ask(marker, g["short_name"])
        | {"messages": [{"role": "user", "content": f"Who keeps the lighthouse? {marker}"}]},
        headers=tenant.headers,
    )
    assert resp.status_code == 200, resp.text
    assert "x-switchyard-grounding" not in resp.headers
    annotations = resp.json()["choices"][0]["message"]["annotations"]
    assert annotations and annotations[0]["document_id"] == document
    assert annotations[0]["chunk_index"] == 0 and 0 < annotations[0]["score"] <= 1
    (seen,) = fake_requests(fake_provider_url, marker)
    system = seen["body"]["messages"][0]["content"]
    assert system.startswith("Answer from the sources.") and "Orla Brightwater" in system
    assert seen["body"]["messages"][-1] == {"role": "assistant", "content": "From the sources:"}
    request_id = resp.headers["x-request-id"]
    _, items = poll(lambda: ledger_entry(stack.database_url("billing"), request_id))
    assert "rag.retrieval.queries" in {i.sku for i in items}

    # Another project cannot attach this project's collection (rag does not find it there).
    other = Tenant(http, stack)
    resp = http.post(
        f"/admin/projects/{other.id}/gateways",
        json={"name": "thief", "model": "mock-chat", "collection_id": collection},
        headers=other.operator,
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "collection_not_found" and "collection_id" in resp.text


def test_a_gateway_change_reaches_a_second_edge_within_a_second(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    with extra_edge(stack) as origin, httpx.Client(base_url=origin, timeout=30) as edge_b:

        def answer(model: str) -> httpx.Response:
            return edge_b.post(
                "/v1/chat/completions", json=_ask("b", model), headers=tenant.headers
            )

        def within(seconds: float, probe: Callable[[], bool]) -> None:
            deadline = time.monotonic() + seconds
            while not probe():
                assert time.monotonic() < deadline, f"not within {seconds} s"
                time.sleep(0.01)

        g = tenant.gateway(params={"max_tokens": 5})
        within(1.0, lambda: answer(g["id"]).status_code == 200)
        resp = http.patch(
            f"/admin/projects/{tenant.id}/gateways/{g['id']}",
            json={"name": "renamed"},
            headers=tenant.operator,
        )
        assert resp.status_code == 200, resp.text
        within(1.0, lambda: answer(f"renamed:{g['id'][:4]}").status_code == 200)
        assert answer(g["short_name"]).status_code == 404
        resp = http.delete(
            f"/admin/projects/{tenant.id}/gateways/{g['id']}", headers=tenant.operator
        )
        assert resp.status_code == 204
        within(1.0, lambda: answer(g["id"]).status_code == 404)


def test_openai_sdk_with_v1_base_url_and_name_short(
    stack: Stack, http: httpx.Client, base_url: str, fake_provider_url: str
) -> None:
    tenant = Tenant(http, stack)
    g = tenant.gateway(instructions="Be brief.")
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=tenant.key, max_retries=0)
    marker = secrets.token_hex(6)
    try:
        answer = client.chat.completions.create(
            model=g["short_name"], messages=[{"role": "user", "content": f"hi {marker}"}]
        )
        assert answer.model == "mock-chat" and answer.choices[0].message.content
        (seen,) = fake_requests(fake_provider_url, marker)
        assert seen["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
        stream = client.chat.completions.create(
            model=g["short_name"], messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(
                model=f"{g['name']}:0000", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.code == "model_not_found"
    finally:
        client.close()


#: The fake provider under a path the catalog's ``fake`` provider does not use, so its
#: request log shows that a call went to the credential's base URL.
OWN_PATH = "/fault/delay_ms=1/v1"


def test_an_own_endpoint_gateway_calls_the_credentials_url_and_bills_byok(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    tenant = Tenant(http, stack)
    provider_key = "sk-own-" + secrets.token_hex(12)
    resp = http.post(
        f"/admin/projects/{tenant.id}/credentials",
        json={
            "provider": "fake",
            "api_key": provider_key,
            "base_url": fake_provider_url + OWN_PATH,
        },
        headers=tenant.operator,
    )
    assert resp.status_code == 201, resp.text
    own_model = f"my-finetune-{secrets.token_hex(3)}"  # not in the catalog
    collection, _ = _collection_with_a_document(stack, tenant.id, "Owls hoot at night.")
    g = tenant.gateway(
        model=own_model,
        credential_id=resp.json()["id"],
        collection_id=collection,
        instructions="Answer from the sources.",
    )
    expected_bearer = hashlib.sha256(provider_key.encode()).hexdigest()
    for path, stream, end in (
        ("/v1/chat/completions", False, None),
        ("/api/v1/chat/completions", True, "[DONE]"),
        ("/api/v1/chat-completions", True, "[END]"),  # seed 002's own path
    ):
        marker = secrets.token_hex(6)
        ask = _ask(marker, g["short_name"], stream=stream)
        ask["messages"][0]["content"] = f"When do owls hoot? {marker}"
        if stream:
            with http.stream("POST", path, json=ask, headers=tenant.headers) as streamed:
                assert streamed.status_code == 200, streamed.read()
                request_id = streamed.headers["x-request-id"]
                frames = sse_data(streamed.iter_lines())
            assert frames[-1] == end
            assert {orjson.loads(f)["model"] for f in frames[:-1]} == {own_model}
        else:
            resp = http.post(path, json=ask, headers=tenant.headers)
            assert resp.status_code == 200, resp.text
            request_id = resp.headers["x-request-id"]
            answer = resp.json()
            assert answer["model"] == own_model
            skus = [i["sku"] for i in answer["generation_context"]["generated_usage"]]
            assert skus == ["rag.retrieval.queries"]
        (seen,) = fake_requests(fake_provider_url, marker)
        assert seen["path"] == f"{OWN_PATH}/chat/completions"
        assert seen["bearer_sha256"] == expected_bearer
        assert seen["body"]["model"] == own_model
        assert "Owls hoot at night." in seen["body"]["messages"][0]["content"]
        entry, items = poll(lambda r=request_id: ledger_entry(stack.database_url("billing"), r))
        assert bool(entry.byok) is True and entry.project_id == tenant.id  # SQLite: 1
        assert [(i.sku, i.quantity) for i in items] == [("rag.retrieval.queries", 1)]


def test_a_key_with_allowed_models_cannot_call_an_own_endpoint_gateway(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    """allowed_models lists catalog models; an own endpoint's model is none of them, so a
    restricted key gets 403 ``model_not_allowed`` naming the gateway, and nothing is sent.
    The same key calls a catalog-model gateway whose model it lists."""
    tenant = Tenant(http, stack)
    resp = http.post(
        f"/admin/projects/{tenant.id}/keys",
        json={"name": "r", "scopes": ["chat"], "allowed_models": ["mock-chat"]},
        headers=tenant.operator,
    )
    assert resp.status_code == 201, resp.text
    restricted = {"authorization": f"Bearer {resp.json()['key']}"}
    resp = http.post(
        f"/admin/projects/{tenant.id}/credentials",
        json={"provider": "fake", "api_key": "sk-own-x", "base_url": fake_provider_url + OWN_PATH},
        headers=tenant.operator,
    )
    assert resp.status_code == 201, resp.text
    own = tenant.gateway(name="own-gw", model="my-own-model", credential_id=resp.json()["id"])
    catalog = tenant.gateway(name="cat-gw")
    marker = secrets.token_hex(6)
    refused = http.post(
        "/v1/chat/completions", json=_ask(marker, own["short_name"]), headers=restricted
    )
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_not_allowed" and error["param"] == "model"
    assert own["short_name"] in error["message"]
    assert fake_requests(fake_provider_url, marker) == []
    resp = http.post("/v1/chat/completions", json=_ask(marker, own["id"]), headers=tenant.headers)
    assert resp.status_code == 200, resp.text  # an unrestricted key of the project may
    ok = http.post(
        "/v1/chat/completions", json=_ask(marker, catalog["short_name"]), headers=restricted
    )
    assert ok.status_code == 200, ok.text
