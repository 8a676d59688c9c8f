"""Seed 001's Gateway API (``POST /api/{project}/{slug}``, ``.../chat/completions``) through the
real app, the session's real billing and a router that answers like the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import httpx
import orjson
import pytest
import sqlalchemy as sa

from edge import EdgeSettings, create_app
from edge.api.routes.gateway_api import GatewayApiRoute, _answer
from edge.endpoints import EndpointView
from edge.pipeline.call import UpstreamAnswer
from edge.pipeline.output import check_completion
from edge.store import EndpointCreate, endpoints_repo, repo
from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common import billing_api as wire
from gateway_common import db, subjects
from gateway_common.errors import (
    AllProvidersFailed,
    CreditsExhausted,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ServiceUnavailable,
)
from gateway_common.telemetry import REQUEST_ID

from .support import (
    OPERATOR,
    Edge,
    RouterServer,
    ScriptedRouter,
    abort,
    admin_settings,
    auth,
    billing_request,
    chunk_event,
    route_event,
    seed_keys,
    serve_router,
    usage_event,
)

pytestmark = pytest.mark.timeout(30)

WRONG_PROJECT = "Token does not belong to this project."


class CompletionRouter(ScriptedRouter):
    """Answers ``Complete`` with an OpenAI chat completion whose content is the request body
    (so a test sees exactly what the edge sent), served by ``fake/fallback`` on attempt 2;
    ``generation_context`` when the call asks for it."""

    async def Complete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CompleteResponse:
        self._record(request, context)
        if self.error is not None:
            await abort(context, self.error)
        answer: dict[str, object] = {
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "model": "mock-chat-upstream",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": request.body.decode()},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
        if request.include_generation_context:
            answer["generation_context"] = {"generated_usage": [], "runned_functions": []}
        route = router_pb2.RouteInfo(
            provider="fake", deployment="fallback", attempts=2, upstream_ms=3
        )
        return router_pb2.CompleteResponse(
            body=orjson.dumps(answer),
            route=route,
            usage=types_pb2.Usage(prompt_tokens=3, completion_tokens=4),
        )


@pytest.fixture
async def router() -> AsyncIterator[RouterServer]:
    async with serve_router(CompletionRouter()) as server:
        yield server


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(
        nats_url, db_url, router, max_body_bytes=64 * 1024, budget_refusal_ttl_s=0.0
    )


def project_id(edge: Edge) -> str:
    return str(edge.app.state.edge.keys.authenticate(auth()["authorization"]).project_id)


async def endpoint(edge: Edge, pid: str, **fields: object) -> dict:
    body = {"slug": "summarize", "model": "mock-chat", **fields}
    resp = await edge.client.post(f"/admin/projects/{pid}/endpoints", json=body, headers=OPERATOR)
    assert resp.status_code == 201, resp.text
    return resp.json()


def sent(router: RouterServer) -> tuple[router_pb2.CompleteRequest, dict]:
    """The last request the router got, and its body."""
    request, _ = router.servicer.calls[-1]
    return request, orjson.loads(request.body)


def assert_error(resp, status: int, code: str | None = None, error: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["ok"] is False and {"ok", "error", "code"} <= set(body)
    if code is not None:
        assert body["code"] == code, body
    if error is not None:
        assert body["error"] == error
    return dict(body)


# -- success ------------------------------------------------------------------------------------


async def test_a_message_call_answers_in_seed_001_shape(edge: Edge, router: RouterServer) -> None:
    pid = project_id(edge)
    await endpoint(
        edge,
        pid,
        system_prompt="Summarize in one line.",
        params={"temperature": 0.2, "max_tokens": 64},
    )
    resp = await edge.client.post(
        f"/api/{pid}/summarize",
        json={"message": "Explain quantum computing."},
        headers={**auth(), "x-request-id": "req-api-1"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected_sent = {
        "model": "mock-chat",
        "temperature": 0.2,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "Summarize in one line."},
            {"role": "user", "content": "Explain quantum computing."},
        ],
        "stream": False,
    }
    assert orjson.loads(body["content"]) == expected_sent
    assert body == {
        "ok": True,
        "id": "chatcmpl-123",
        "model": "mock-chat-upstream",
        "content": body["content"],
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "meta": {
            "request_id": "req-api-1",
            "endpoint": "summarize",
            "provider": "fake",
            "deployment": "fallback",
            "attempts": 2,
        },
        "generation_context": {"generated_usage": [], "runned_functions": []},
    }
    # The meta equals the headers /v1 sets.
    assert resp.headers["x-request-id"] == "req-api-1"
    assert resp.headers["x-switchyard-provider"] == "fake"
    assert resp.headers["x-switchyard-deployment"] == "fallback"
    assert resp.headers["x-switchyard-attempts"] == "2"
    assert resp.headers["x-switchyard-endpoint"] == "summarize"
    assert float(resp.headers["x-switchyard-overhead-ms"]) >= 0

    request, forwarded = sent(router)
    assert forwarded == expected_sent
    assert request.endpoint == "summarize"
    assert request.model == "mock-chat"
    assert request.operation == router_pb2.OPERATION_CHAT_COMPLETIONS
    assert request.project_id == pid and request.api_key_id == edge.key_ids["all"]


async def test_the_dispatcher_takes_the_slug_and_messages_from_the_body(
    edge: Edge, router: RouterServer
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, slug="chat")  # "chat" is an ordinary slug
    messages = [
        {"role": "system", "content": "You are a teacher."},
        {"role": "user", "content": "What's a qubit?", "name": "ann"},
    ]
    resp = await edge.client.post(
        f"/api/{pid}/chat/completions",
        json={"endpoint": "chat", "messages": messages},
        headers=auth(),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["meta"]["endpoint"] == "chat"
    request, forwarded = sent(router)
    assert forwarded["messages"] == messages  # unknown message fields kept
    assert request.endpoint == "chat"
    direct = await edge.client.post(f"/api/{pid}/chat", json={"messages": messages}, headers=auth())
    assert direct.status_code == 200
    assert direct.json()["content"] == resp.json()["content"]


async def test_generation_context_follows_the_project_setting(edge: Edge) -> None:
    created = await edge.client.post(
        "/admin/projects",
        json={"name": "plain", "settings": {"generation_context": False}},
        headers=OPERATOR,
    )
    pid = created.json()["id"]
    key = await edge.client.post(
        f"/admin/projects/{pid}/keys", json={"name": "k", "scopes": ["chat"]}, headers=OPERATOR
    )
    await endpoint(edge, pid)
    resp = await edge.client.post(
        f"/api/{pid}/summarize",
        json={"message": "hi"},
        headers={"authorization": f"Bearer {key.json()['key']}"},
    )
    assert resp.status_code == 200, resp.text
    assert "generation_context" not in resp.json()


async def test_stream_is_sse_when_enabled_and_unary_when_not(
    edge: Edge, router: RouterServer
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, slug="live", streaming_enabled=True)
    await endpoint(edge, pid, slug="still")
    chunk = b'{"id":"c1","object":"chat.completion.chunk","choices":[{"delta":{"content":"Hi"}}]}'
    router.servicer.stream_events = [
        route_event("fake", "fake/primary"),
        chunk_event(chunk),
        usage_event(),
    ]
    resp = await edge.client.post(
        f"/api/{pid}/live", json={"message": "hi", "stream": True}, headers=auth()
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text == f"data: {chunk.decode()}\n\ndata: [DONE]\n\n"
    assert resp.headers["x-switchyard-provider"] == "fake"
    assert resp.headers["x-switchyard-deployment"] == "fake/primary"
    assert resp.headers["x-switchyard-attempts"] == "1"
    assert resp.headers["x-switchyard-endpoint"] == "live"
    request, forwarded = sent(router)
    assert forwarded["stream"] is True and request.endpoint == "live"

    resp = await edge.client.post(
        f"/api/{pid}/still", json={"message": "hi", "stream": True}, headers=auth()
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["ok"] is True
    _, forwarded = sent(router)
    assert forwarded["stream"] is False


async def test_a_call_reads_no_database(settings: EdgeSettings, router: RouterServer) -> None:
    """Endpoints and project types come from memory: count the statements of three calls
    (the endpoint is stored before the edge starts, so no cache reload runs meanwhile)."""
    await seed_keys(settings.resolved_database_url())
    engine = db.create_engine(settings.resolved_database_url())
    try:
        async with db.make_sessionmaker(engine)() as session:
            project = await repo.get_project_by_name(session=session, name="test")
            assert project is not None
            pid = project.id
            await endpoints_repo.create_endpoint(
                session=session,
                project_id=pid,
                data=EndpointCreate(slug="summarize", model="mock-chat"),
            )
    finally:
        await engine.dispose()
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        sync_engine = app.state.edge.engine.sync_engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            sa.event.listen(sync_engine, "before_cursor_execute", count)
            try:
                for _ in range(3):
                    resp = await client.post(
                        f"/api/{pid}/summarize", json={"message": "hi"}, headers=auth()
                    )
                    assert resp.status_code == 200, resp.text
            finally:
                sa.event.remove(sync_engine, "before_cursor_execute", count)
    assert statements == []


# -- seed 001's error table ---------------------------------------------------------------------


async def test_auth_errors_in_seed_order(edge: Edge, router: RouterServer) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid)
    other = await edge.client.post("/admin/projects", json={"name": "b"}, headers=OPERATOR)
    other_id = other.json()["id"]
    await endpoint(edge, other_id, system_prompt="B's secret prompt")
    body = {"message": "hi"}
    for path in (f"/api/{pid}/summarize", f"/api/{pid}/chat/completions"):
        payload = {**body, "endpoint": "summarize"} if path.endswith("completions") else body
        assert_error(
            await edge.client.post(path, json=payload),
            401,
            "invalid_api_key",
            "Missing Bearer token.",
        )
        assert_error(
            await edge.client.post(
                path, json=payload, headers={"authorization": "Bearer sk-sy-nope-nope-nope"}
            ),
            401,
        )
        assert_error(
            await edge.client.post(path, json=payload, headers=auth("revoked")),
            401,
            "api_key_revoked",
        )
        assert_error(
            await edge.client.post(path, json=payload, headers=auth("expired")),
            401,
            "api_key_expired",
        )
        assert_error(
            await edge.client.post(path, json=payload, headers=auth("embed")),
            403,
            "insufficient_scope",
            "This API key lacks the 'chat' scope required for this endpoint.",
        )
    # A key of project "test" on project B: 403 before anything of B is looked up.
    for path, payload in (
        (f"/api/{other_id}/summarize", body),
        (f"/api/{other_id}/chat/completions", {**body, "endpoint": "summarize"}),
        (f"/api/{other_id}/does-not-exist", {"not": "even valid"}),
    ):
        resp = await edge.client.post(path, json=payload, headers=auth())
        assert_error(resp, 403, "wrong_project", WRONG_PROJECT)
        assert "secret" not in resp.text and "summarize" not in resp.text
    assert len(router.servicer.calls) == 0


async def test_unknown_or_inactive_endpoints_are_404(edge: Edge, router: RouterServer) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, slug="off", active=False)
    for path, payload in (
        (f"/api/{pid}/nope", {"message": "hi"}),
        (f"/api/{pid}/off", {"message": "hi"}),
        (f"/api/{pid}/chat/completions", {"endpoint": "nope", "message": "hi"}),
        (f"/api/{pid}/chat/completions", {"endpoint": "off", "message": "hi"}),
    ):
        resp = await edge.client.post(path, json=payload, headers=auth())
        assert_error(resp, 404, "endpoint_not_found")
    assert len(router.servicer.calls) == 0


async def test_a_channel_project_is_refused_with_400(edge: Edge) -> None:
    created = await edge.client.post(
        "/admin/projects", json={"name": "site", "type": "channel"}, headers=OPERATOR
    )
    pid = created.json()["id"]
    key = await edge.client.post(
        f"/admin/projects/{pid}/keys", json={"name": "k", "scopes": ["chat"]}, headers=OPERATOR
    )
    headers = {"authorization": f"Bearer {key.json()['key']}"}
    await endpoint(edge, pid)
    for path in (f"/api/{pid}/summarize", f"/api/{pid}/chat/completions"):
        resp = await edge.client.post(path, json={"message": "hi"}, headers=headers)
        assert_error(resp, 400, "wrong_project_type")
        assert "'channel'" in resp.json()["error"]


@pytest.mark.parametrize(
    ("path", "content", "code", "mentions"),
    [
        ("summarize", b"{not json", "invalid_json", ""),
        ("summarize", b"{}", "invalid_request_body", "exactly one of 'message' or 'messages'"),
        (
            "summarize",
            b'{"message":"a","messages":[{"role":"user","content":"b"}]}',
            "invalid_request_body",
            "exactly one",
        ),
        ("summarize", b'{"message":"a","model":"gpt-4o"}', "invalid_value", "'model'"),
        ("summarize", b'{"message":"a","endpoint":"summarize"}', "invalid_value", "'endpoint'"),
        ("summarize", b'{"message":"a","stream":"yes"}', "invalid_type", "'stream'"),
        ("summarize", b'{"message":""}', "invalid_value", "'message'"),
        ("summarize", b'{"messages":[]}', "invalid_value", "'messages'"),
        ("summarize", b'{"messages":[{"role":"robot","content":"x"}]}', "invalid_value", "role"),
        ("summarize", b'{"message":"a","session_id":"0b0f"}', "sessions_disabled", "session"),
        ("chat/completions", b'{"message":"a"}', "missing_required_parameter", "'endpoint'"),
        ("chat/completions", b'{"endpoint":"summarize"}', "invalid_request_body", "exactly one"),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(
    edge: Edge, router: RouterServer, path: str, content: bytes, code: str, mentions: str
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid)
    resp = await edge.client.post(f"/api/{pid}/{path}", content=content, headers=auth())
    body = assert_error(resp, 400, code)
    assert mentions in body["error"]
    assert len(router.servicer.calls) == 0


async def test_too_many_messages_and_too_large_bodies(edge: Edge, settings: EdgeSettings) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, system_prompt="sys")
    many = [{"role": "user", "content": "x"}] * settings.max_messages
    resp = await edge.client.post(f"/api/{pid}/summarize", json={"messages": many}, headers=auth())
    assert_error(resp, 400, "too_many_messages")  # the system prompt counts too
    huge = {"message": "x" * (settings.max_body_bytes + 1)}
    resp = await edge.client.post(f"/api/{pid}/summarize", json=huge, headers=auth())
    assert_error(resp, 413, "request_too_large")


async def test_unknown_methods_and_paths_under_api_keep_the_shape(edge: Edge) -> None:
    pid = project_id(edge)
    resp = await edge.client.get(f"/api/{pid}/summarize", headers=auth())
    assert_error(resp, 405, "method_not_allowed")
    resp = await edge.client.post(f"/api/{pid}/a/b/c", json={}, headers=auth())
    assert_error(resp, 404, "unknown_url")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ProviderUnavailable("upstream 503"), 502, "provider_unavailable"),
        (ProviderTimeout("upstream slow"), 502, "provider_timeout"),
        (ModelNotFound("The model 'gone' does not exist."), 404, "model_not_found"),
        (ServiceUnavailable("router down"), 503, "service_unavailable"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_router_errors_take_seed_001_statuses(
    edge: Edge, router: RouterServer, error, status: int, code: str, stream: bool
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, streaming_enabled=True)
    router.servicer.error = error
    resp = await edge.client.post(
        f"/api/{pid}/summarize", json={"message": "hi", "stream": stream}, headers=auth()
    )
    assert_error(resp, status, code, error.message)


async def test_a_failed_failover_is_502_with_every_attempt(
    edge: Edge, router: RouterServer
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid)
    router.servicer.error = AllProvidersFailed(
        [
            ("fo-500/primary", ProviderUnavailable("upstream 500")),
            ("fake/fallback", ProviderTimeout("upstream slow")),
        ]
    )
    resp = await edge.client.post(f"/api/{pid}/summarize", json={"message": "hi"}, headers=auth())
    body = assert_error(resp, 502, "all_providers_failed")
    assert [(a["provider"], a["deployment"], a["status"]) for a in body["attempts"]] == [
        ("fo-500", "primary", 502),
        ("fake", "fallback", 504),
    ]


async def test_a_budget_refusal_is_422_with_the_budget_message(
    edge: Edge, router: RouterServer, settings: EdgeSettings
) -> None:
    pid = project_id(edge)
    await endpoint(edge, pid, params={"max_tokens": 10})
    await billing_request(
        settings.nats_url,
        subjects.BILLING_BUDGET_SET,
        wire.BudgetSet(project_id=pid, limit=Decimal("0.000000001")),
    )
    try:
        resp = await edge.client.post(
            f"/api/{pid}/summarize", json={"message": "hi"}, headers=auth()
        )
        body = assert_error(resp, 422, "insufficient_quota")
        assert "monthly budget" in body["error"]
        assert len(router.servicer.calls) == 0
    finally:
        await billing_request(
            settings.nats_url,
            subjects.BILLING_BUDGET_SET,
            wire.BudgetSet(project_id=pid, limit=None),
        )


def test_a_credits_refusal_maps_to_422_too() -> None:
    resp = GatewayApiRoute.error_response(CreditsExhausted("Credits exhausted."))
    assert resp.status_code == 422
    assert orjson.loads(bytes(resp.body)) == {
        "ok": False,
        "error": "Credits exhausted.",
        "code": "credits_exhausted",
    }


async def test_the_routes_are_in_the_openapi_document(edge: Edge) -> None:
    paths = (await edge.client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/api/{project_id}/{slug}"]
    assert "post" in paths["/api/{project_id}/chat/completions"]
    assert "/admin/projects/{project_id}/endpoints/{slug}" in paths


def test_an_answer_with_nulls_is_still_an_answer_and_garbage_is_502() -> None:
    token = REQUEST_ID.set("req-null")
    view = EndpointView(endpoint_id="e", slug="s", model="mock-chat")
    try:
        body = b'{"id":null,"choices":[{"message":null,"finish_reason":null}],"usage":null}'
        completion = check_completion(UpstreamAnswer(body, {}), view, None)
        answer = orjson.loads(bytes(_answer(completion, "s", {}).body))
        assert answer["ok"] is True and answer["content"] is None
        assert answer["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        assert answer["meta"]["request_id"] == "req-null" and "generation_context" not in answer
        with pytest.raises(ProviderError):
            check_completion(UpstreamAnswer(b"not json", {}), view, None)
    finally:
        REQUEST_ID.reset(token)
