"""Seed 002's gateways on the real edge app: admin CRUD and validation, the cache, prompt
apply (instructions, retrieved chunks, prefill, fixed vs overridable params), the three
paths, ``name:short`` and the full id, 404 for unknown ones, rag failure modes, streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson
import pytest

from edge import EdgeSettings
from edge.gateways import (
    Chunk,
    GatewayCache,
    GatewayView,
    ProjectGateways,
    apply,
    choose_model,
    looks_like_gateway,
)
from gateway_common.errors import NotFound, ServiceUnavailable
from gateway_common.tokens import ESTIMATE_CHARS_PER_TOKEN

from .support import (
    OPERATOR,
    Edge,
    RouterServer,
    admin_settings,
    auth,
    batch_event,
    route_event,
    usage_event,
)

pytestmark = pytest.mark.timeout(30)

CHUNKS = (Chunk("doc-1", 0, "Paris is the capital of France.", 0.9),)


class FakeRetriever:
    """Answers every query with ``chunks``, or raises ``error``; records the queries."""

    def __init__(self, chunks: Sequence[Chunk] = CHUNKS, error: Exception | None = None) -> None:
        self.chunks, self.error, self.queries = chunks, error, []  # type: ignore[var-annotated]

    async def retrieve(self, **query: object) -> Sequence[Chunk]:
        self.queries.append(query)
        if self.error is not None:
            raise self.error
        return self.chunks


class FakeRag:
    """Knows every collection but ``missing`` (what the admin routes ask before attaching)."""

    async def get_collection(self, project_id: str, collection_id: str) -> object:
        if collection_id == "missing":
            raise NotFound("Collection not found.", code="collection_not_found")
        return object()


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(nats_url, db_url, router, budget_refusal_ttl_s=0.0)


def project_id(edge: Edge) -> str:
    return str(edge.app.state.edge.keys.authenticate(auth()["authorization"]).project_id)


def use_retriever(edge: Edge, retriever: FakeRetriever) -> None:
    edge.app.state.edge = dataclasses.replace(
        edge.app.state.edge, retriever=retriever, rag=FakeRag()
    )


async def gateway(edge: Edge, **fields: object) -> dict:
    body = {"name": "my-gateway", "model": "mock-chat", **fields}
    resp = await edge.client.post(
        f"/admin/projects/{project_id(edge)}/gateways", json=body, headers=OPERATOR
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def sent(router: RouterServer) -> dict:
    request, _ = router.servicer.calls[-1]
    return dict(orjson.loads(request.body))


# -- pure parts -------------------------------------------------------------------------------


def view(**fields: object) -> GatewayView:
    base: dict[str, object] = {
        "gateway_id": "50c3aaaa-0000-4000-8000-000000000000",
        "project_id": "p1",
        "name": "g",
        "model": "mock-chat",
    }
    return GatewayView(**(base | fields))  # type: ignore[arg-type]


def test_gateway_references_are_recognised() -> None:
    assert looks_like_gateway("my-gateway:50c3")
    assert looks_like_gateway("0198683a-2b6d-7066-9598-6ea119c219f2")
    assert not looks_like_gateway("mock-chat")
    assert not looks_like_gateway("my-gateway:50c")


def test_cache_finds_by_id_and_short_name_in_its_project_only() -> None:
    cache = GatewayCache()
    v = view()
    cache.replace({"p1": ProjectGateways.of([v])})
    assert cache.find("p1", v.gateway_id) is v
    assert cache.find("p1", "g:50c3") is v
    assert cache.find("p2", v.gateway_id) is None
    assert cache.find("p1", "g:50c4") is None


def test_apply_fixes_params_unless_overridable_and_places_instructions_chunks_prefill() -> None:
    v = view(
        instructions="Be brief.",
        params={"temperature": 0.1, "top_p": 0.5, "prefill": "Answer:"},
        overridable=frozenset({"temperature"}),
    )
    body = {"model": "g:50c3", "messages": [{"role": "user", "content": "Hi"}], "top_p": 0.9}
    out = orjson.loads(apply(v, body | {"temperature": 0.7}, CHUNKS, model="mock-chat"))
    assert out["temperature"] == 0.7 and out["top_p"] == 0.5 and out["model"] == "mock-chat"
    system, user, prefill = out["messages"]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert 'document="doc-1" chunk="0"' in system["content"]
    assert "Paris is the capital" in system["content"]
    assert user == {"role": "user", "content": "Hi"}
    assert prefill == {"role": "assistant", "content": "Answer:"}


def test_routing_auto_picks_strong_for_long_or_hard_prompts() -> None:
    v = view(routing={"policy": "auto", "cheap": "c", "strong": "s"})
    assert choose_model(v, {"messages": [{"role": "user", "content": "Hi"}]}) == "c"
    assert choose_model(v, {"messages": [{"role": "user", "content": "Explain why"}]}) == "s"
    assert choose_model(v, {"messages": [{"role": "user", "content": "a" * 2000}]}) == "s"


# -- admin ------------------------------------------------------------------------------------


async def test_admin_crud_and_validation_naming_the_field(edge: Edge) -> None:
    use_retriever(edge, FakeRetriever())
    pid = project_id(edge)
    url = f"/admin/projects/{pid}/gateways"
    created = await gateway(edge, params={"temperature": 0.3, "prefill": "Sure:"})
    assert created["short_name"] == f"my-gateway:{created['id'][:4]}"
    for bad, param in (
        ({"model": "no-such-model"}, "model"),
        ({"params": {"temperature": 5}}, "params.temperature"),
        ({"overridable": ["model"]}, "overridable"),
        ({"on_rag_failure": "maybe"}, "on_rag_failure"),
        ({"routing": {"policy": "auto", "cheap": "mock-chat", "strong": "nope"}}, "routing.strong"),
        ({"credential_id": "nope"}, "credential_id"),
        ({"top_k": 0}, "top_k"),
        ({"collection_id": "missing"}, "collection_id"),
        ({"name": "Not A Slug"}, "name"),
    ):
        resp = await edge.client.post(
            url, json={"name": "g", "model": "mock-chat"} | bad, headers=OPERATOR
        )
        assert resp.status_code == 400, (bad, resp.text)
        assert param in resp.text, (param, resp.text)
    gid = created["id"]
    resp = await edge.client.patch(f"{url}/{gid}", json={"top_k": 3}, headers=OPERATOR)
    assert resp.status_code == 200 and resp.json()["top_k"] == 3
    listed = (await edge.client.get(url, headers=OPERATOR)).json()["data"]
    assert [g["id"] for g in listed] == [gid]
    assert (await edge.client.delete(f"{url}/{gid}", headers=OPERATOR)).status_code == 204
    assert (await edge.client.get(f"{url}/{gid}", headers=OPERATOR)).status_code == 404
    resp = await edge.client.post(
        "/v1/chat/completions",
        json={"model": gid, "messages": [{"role": "user", "content": "x"}]},
        headers=auth(),
    )
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


# -- serving ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/api/v1/chat-completions", "/api/v1/chat/completions"]
)
async def test_a_gateway_answers_on_every_path_by_id_and_short_name(
    edge: Edge, router: RouterServer, path: str
) -> None:
    use_retriever(edge, FakeRetriever())
    g = await gateway(
        edge,
        instructions="Answer in Portuguese.",
        collection_id="col-1",
        top_k=3,
        min_score=0.2,
        params={"temperature": 0.1, "max_tokens": 50, "prefill": "Resposta:"},
        overridable=["temperature"],
    )
    for model in (g["id"], g["short_name"]):
        resp = await edge.client.post(
            path,
            json={
                "model": model,
                "messages": [{"role": "user", "content": "Capital da França?"}],
                "temperature": 0.9,
                "max_tokens": 999,
                "metadata": {"foo": "bar"},
            },
            headers=auth(),
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-switchyard-gateway"] == g["id"]
        body = sent(router)
        assert body["model"] == "mock-chat"
        assert body["temperature"] == 0.9  # overridable: the request's
        assert body["max_tokens"] == 50  # fixed: the request's 999 ignored
        assert body["metadata"] == {"foo": "bar"}
        assert body["messages"][0]["content"].startswith("Answer in Portuguese.")
        assert "Paris is the capital" in body["messages"][0]["content"]
        assert body["messages"][-1] == {"role": "assistant", "content": "Resposta:"}
        assert resp.json()["model"] == "mock-chat"
    request, _ = router.servicer.calls[-1]
    assert request.endpoint_id == g["id"]
    assert dict(request.metadata) == {"foo": "bar"}


async def test_another_projects_gateway_is_404(edge: Edge) -> None:
    resp = await edge.client.post("/admin/projects", json={"name": "other"}, headers=OPERATOR)
    assert resp.status_code == 201, resp.text
    other = resp.json()["id"]
    resp = await edge.client.post(
        f"/admin/projects/{other}/gateways",
        json={"name": "theirs", "model": "mock-chat"},
        headers=OPERATOR,
    )
    assert resp.status_code == 201, resp.text
    for path in ("/v1/chat/completions", "/api/v1/chat-completions"):
        for model in (resp.json()["id"], resp.json()["short_name"]):
            answer = await edge.client.post(
                path,
                json={"model": model, "messages": [{"role": "user", "content": "x"}]},
                headers=auth(),
            )
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "model_not_found"


async def test_rag_failure_fails_with_503_or_answers_ungrounded(edge: Edge) -> None:
    use_retriever(edge, FakeRetriever(error=ServiceUnavailable("rag down")))
    failing = await gateway(edge, collection_id="c")
    lenient = await gateway(edge, name="lenient", collection_id="c", on_rag_failure="ungrounded")
    msg = {"messages": [{"role": "user", "content": "x"}]}
    resp = await edge.client.post(
        "/v1/chat/completions", json={"model": failing["id"], **msg}, headers=auth()
    )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "rag_unavailable"
    resp = await edge.client.post(
        "/v1/chat/completions", json={"model": lenient["id"], **msg}, headers=auth()
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchyard-grounding"] == "ungrounded"


async def test_seed_path_stream_ends_with_end_and_nulls_usage_until_the_last(
    edge: Edge, router: RouterServer
) -> None:
    use_retriever(edge, FakeRetriever())
    g = await gateway(edge, collection_id="c")
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "up",
        "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}],
    }
    final = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {
        **chunk,
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    router.servicer.stream_events = [
        route_event(),
        batch_event(orjson.dumps(chunk), orjson.dumps(final), orjson.dumps(usage)),
        usage_event(),
    ]
    msg = {"model": g["short_name"], "stream": True, "messages": [{"role": "user", "content": "x"}]}
    for path, end in (("/api/v1/chat-completions", "[END]"), ("/v1/chat/completions", "[DONE]")):
        resp = await edge.client.post(path, json=msg, headers=auth())
        assert resp.status_code == 200, resp.text
        frames = [line[6:] for line in resp.text.split("\n\n") if line.startswith("data: ")]
        assert frames[-1] == end
        chunks = [orjson.loads(f) for f in frames[:-1]]
        assert all(c["model"] == "mock-chat" for c in chunks)
        assert chunks[1]["choices"][0]["delta"]["annotations"] == [
            {"type": "file_citation", "document_id": "doc-1", "chunk_index": 0, "score": 0.9}
        ]
        if end == "[END]":
            assert [c["usage"] for c in chunks[:-1]] == [None, None]
            assert chunks[-1]["usage"]["total_tokens"] == 3
            assert sent(router)["stream_options"] == {"include_usage": True}


async def test_routing_and_retrieval_line_items_ride_on_the_router_call(
    edge: Edge, router: RouterServer
) -> None:
    use_retriever(edge, FakeRetriever())
    g = await gateway(
        edge,
        collection_id="c",
        routing={"policy": "auto", "cheap": "mock-chat", "strong": "mock-reasoning"},
    )
    for text, model in (("hi", "mock-chat"), ("Explain why the sky is blue", "mock-reasoning")):
        resp = await edge.client.post(
            "/v1/chat/completions",
            json={"model": g["id"], "messages": [{"role": "user", "content": text}]},
            headers=auth(),
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == model
        request, _ = router.servicer.calls[-1]
        assert request.model == model
        assert [(s.sku, s.quantity) for s in request.sku_usage] == [
            ("rag.retrieval.queries", 1),
            (
                "inference.resolving.routing_complexity.in",
                max(-(-len(text) // ESTIMATE_CHARS_PER_TOKEN), 1),
            ),
            ("inference.resolving.routing_complexity.out", 1),
        ]


async def test_an_own_endpoint_gateway_needs_a_safe_base_url_and_serves_on_every_path(
    edge: Edge, router: RouterServer
) -> None:
    pid = project_id(edge)

    async def credential(provider: str, base_url: str | None = None) -> str:
        body = {"provider": provider, "api_key": "sk-own-0123456789", "base_url": base_url}
        resp = await edge.client.post(
            f"/admin/projects/{pid}/credentials", json=body, headers=OPERATOR
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    url = f"/admin/projects/{pid}/gateways"
    own = {"name": "own", "model": "my-finetune"}  # not in the catalog
    bare = await credential("fake")
    resp = await edge.client.post(url, json=own | {"credential_id": bare}, headers=OPERATOR)
    assert resp.status_code == 400, resp.text
    refused = resp.json()  # the admin API's {ok: false, error, code}
    assert refused["code"] == "credential_base_url_missing"
    assert "'credential_id'" in refused["error"] and "'base_url'" in refused["error"]

    state = edge.app.state.edge
    private = state.settings.model_copy(update={"allow_private_upstreams": True})
    edge.app.state.edge = dataclasses.replace(state, settings=private)
    loopback = await credential("fake-alt", "http://127.0.0.1:9/v1")
    edge.app.state.edge = state  # the operator flag is off again: SSRF rules refuse it now
    resp = await edge.client.post(url, json=own | {"credential_id": loopback}, headers=OPERATOR)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "unsafe_base_url"

    g = await gateway(edge, **own, credential_id=await credential("fake", "https://1.1.1.1/v1"))
    router.servicer.stream_events = [route_event(), usage_event()]
    ask = {"model": g["short_name"], "messages": [{"role": "user", "content": "x"}]}
    for path in ("/v1/chat/completions", "/api/v1/chat-completions", "/api/v1/chat/completions"):
        for stream in (False, True):
            resp = await edge.client.post(path, json=ask | {"stream": stream}, headers=auth())
            assert resp.status_code == 200, (path, stream, resp.text)
            request, _ = router.servicer.calls[-1]
            assert request.own_endpoint and request.model == "my-finetune", (path, stream)
            assert [(c.provider, c.base_url) for c in request.credentials] == [
                ("fake", "https://1.1.1.1/v1")
            ]
