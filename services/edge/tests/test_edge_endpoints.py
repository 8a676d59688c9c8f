"""Gateway API endpoints: the table, the admin routes, validation and the in-memory cache."""

from __future__ import annotations

from types import MappingProxyType

import nats
import orjson
import pytest
import sqlalchemy as sa
from nats.aio.msg import Msg

from edge import EdgeSettings
from edge.endpoints import EndpointCache, EndpointView, ProjectEndpoints
from edge.store import Endpoint, EndpointCreate, endpoints_repo
from gateway_common import db, subjects

from .support import OPERATOR, Edge, RouterServer, admin_settings, auth, eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(nats_url, db_url, router)


def project_id(edge: Edge) -> str:
    """The seeded project ``test`` (every key of ``support.KEYS`` is one of its)."""
    return str(edge.app.state.edge.keys.authenticate(auth()["authorization"]).project_id)


def cache(edge: Edge) -> EndpointCache:
    found: EndpointCache = edge.app.state.edge.endpoints
    return found


async def create(edge: Edge, pid: str, **fields: object) -> dict:
    body = {"slug": "summarize", "model": "mock-chat", **fields}
    resp = await edge.client.post(f"/admin/projects/{pid}/endpoints", json=body, headers=OPERATOR)
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_error(resp, status: int, code: str | None = None, contains: str = "") -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["ok"] is False and set(body) == {"ok", "error", "code"}
    if code is not None:
        assert body["code"] == code
    assert contains in body["error"]


# -- prompt apply and the cache (pure) -----------------------------------------------------------


def test_prompt_apply_puts_the_system_prompt_first_and_honours_streaming_only_if_enabled() -> None:
    view = EndpointView(
        endpoint_id="e1",
        slug="s",
        model="mock-chat",
        system_prompt="Be brief.",
        params=MappingProxyType({"temperature": 0.2, "max_tokens": 50}),
    )
    body = orjson.loads(view.body([{"role": "user", "content": "hi"}], stream=True))
    assert body == {
        "model": "mock-chat",
        "temperature": 0.2,
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        "stream": False,
    }
    assert list(body) == ["model", "temperature", "max_tokens", "messages", "stream"]
    assert view.max_output_tokens == 50
    streaming = EndpointView(endpoint_id="e2", slug="t", model="m", streaming_enabled=True)
    body = orjson.loads(streaming.body([{"role": "user", "content": "x"}], stream=True))
    assert body["stream"] is True and body["messages"] == [{"role": "user", "content": "x"}]
    assert streaming.max_output_tokens is None


def test_the_cache_serves_active_endpoints_only() -> None:
    endpoints = EndpointCache()
    live = EndpointView(endpoint_id="1", slug="live", model="m")
    off = EndpointView(endpoint_id="2", slug="off", model="m", active=False)
    endpoints.replace({"p": ProjectEndpoints("ai_gateway", {"live": live, "off": off})})
    assert endpoints.get("p", "live") is live
    assert endpoints.get("p", "off") is None
    assert endpoints.get("p", "nope") is None
    assert endpoints.get("q", "live") is None
    assert endpoints.project_type("p") == "ai_gateway" and endpoints.project_type("q") is None
    endpoints.remove("p")
    assert endpoints.get("p", "live") is None and len(endpoints) == 0


# -- admin API ------------------------------------------------------------------------------------


async def test_endpoint_lifecycle_through_the_admin_api(edge: Edge) -> None:
    pid = project_id(edge)
    created = await create(
        edge,
        pid,
        description="Summaries",
        system_prompt="Summarize.",
        params={"temperature": 0.3, "max_tokens": 100, "stop": None},
        streaming_enabled=True,
    )
    assert created["project_id"] == pid and created["slug"] == "summarize"
    assert created["params"] == {"temperature": 0.3, "max_tokens": 100}  # null entries dropped
    assert created["active"] is True and created["streaming_enabled"] is True
    assert set(created) == {
        "id",
        "project_id",
        "slug",
        "description",
        "model",
        "system_prompt",
        "params",
        "streaming_enabled",
        "active",
        "prompt_template",
        "input_schema",
        "output_schema",
        "guardrails",
        "max_request_tokens",
        "monthly_budget",
        "rate_limits",
        "fallbacks",
        "sessions_enabled",
        "session_ttl_seconds",
        "created_at",
        "updated_at",
    }
    path = f"/admin/projects/{pid}/endpoints"
    listed = (await edge.client.get(path, headers=OPERATOR)).json()["data"]
    assert listed == [created]
    assert (await edge.client.get(f"{path}/summarize", headers=OPERATOR)).json() == created

    patched = await edge.client.patch(
        f"{path}/summarize",
        json={"system_prompt": None, "active": False, "params": {"seed": 7}},
        headers=OPERATOR,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["system_prompt"] is None and body["active"] is False
    assert body["params"] == {"seed": 7} and body["description"] == "Summaries"
    assert body["updated_at"] >= created["updated_at"]

    renamed = await edge.client.patch(
        f"{path}/summarize", json={"slug": "digest"}, headers=OPERATOR
    )
    assert renamed.json()["slug"] == "digest"
    assert_error(
        await edge.client.get(f"{path}/summarize", headers=OPERATOR), 404, "endpoint_not_found"
    )
    assert (await edge.client.delete(f"{path}/digest", headers=OPERATOR)).status_code == 204
    assert (await edge.client.get(path, headers=OPERATOR)).json() == {"data": []}
    assert_error(await edge.client.delete(f"{path}/digest", headers=OPERATOR), 404)


async def test_a_project_admin_key_manages_its_own_endpoints_only(edge: Edge) -> None:
    pid = project_id(edge)
    other = await edge.client.post("/admin/projects", json={"name": "other"}, headers=OPERATOR)
    other_id = other.json()["id"]
    # The seeded key "all" carries the admin scope of project "test".
    created = await edge.client.post(
        f"/admin/projects/{pid}/endpoints", json={"slug": "a", "model": "mock-chat"}, headers=auth()
    )
    assert created.status_code == 201, created.text
    for method in ("GET", "POST"):
        resp = await edge.client.request(
            method,
            f"/admin/projects/{other_id}/endpoints",
            json={"slug": "a", "model": "mock-chat"},
            headers=auth(),
        )
        assert_error(resp, 403, "wrong_project", "Token does not belong to this project.")
    for method in ("GET", "PATCH", "DELETE"):
        resp = await edge.client.request(
            method, f"/admin/projects/{other_id}/endpoints/a", json={}, headers=auth()
        )
        assert_error(resp, 403, "wrong_project")
    # A key without the admin scope, and no key at all.
    assert_error(
        await edge.client.get(f"/admin/projects/{pid}/endpoints", headers=auth("embed")),
        403,
        "insufficient_scope",
    )
    assert_error(await edge.client.get(f"/admin/projects/{pid}/endpoints"), 401)


@pytest.mark.parametrize(
    ("body", "status", "code", "contains"),
    [
        ({"slug": "Bad Slug", "model": "mock-chat"}, 400, "invalid_value", "'slug'"),
        ({"slug": "-x", "model": "mock-chat"}, 400, "invalid_value", "'slug'"),
        ({"slug": "x" * 65, "model": "mock-chat"}, 400, "invalid_value", "'slug'"),
        ({"slug": "ok", "model": "no-such-model"}, 400, "model_not_found", "no-such-model"),
        ({"slug": "ok"}, 400, "missing_required_parameter", "'model'"),
        (
            {"slug": "ok", "model": "mock-chat", "params": {"tools": []}},
            400,
            "invalid_value",
            "'tools' is not an endpoint parameter",
        ),
        (
            {"slug": "ok", "model": "mock-chat", "params": {"model": "other"}},
            400,
            "invalid_value",
            "'model' is not an endpoint parameter",
        ),
        (
            {"slug": "ok", "model": "mock-chat", "params": {"temperature": "hot"}},
            400,
            "invalid_type",
            "'params.temperature'",
        ),
        (
            {"slug": "ok", "model": "mock-chat", "params": {"max_tokens": 0}},
            400,
            "integer_below_min_value",
            "'params.max_tokens'",
        ),
        ({"slug": "ok", "model": "mock-chat", "owner": "x"}, 400, "invalid_value", "'owner'"),
        ({"slug": "ok", "model": "mock-chat", "active": "yes"}, 400, None, "'active'"),
    ],
)
async def test_invalid_endpoints_are_refused_naming_the_field(
    edge: Edge, body: dict, status: int, code: str | None, contains: str
) -> None:
    resp = await edge.client.post(
        f"/admin/projects/{project_id(edge)}/endpoints", json=body, headers=OPERATOR
    )
    assert_error(resp, status, code, contains)


async def test_every_allowed_param_is_accepted(edge: Edge) -> None:
    params = {
        "temperature": 1,
        "top_p": 0.9,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.1,
        "stop": ["\n\n"],
        "seed": 3,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
    }
    created = await create(edge, project_id(edge), params=params)
    assert created["params"] == params


async def test_slugs_are_unique_per_project(edge: Edge) -> None:
    pid = project_id(edge)
    await create(edge, pid, slug="one")
    await create(edge, pid, slug="two")
    path = f"/admin/projects/{pid}/endpoints"
    dup = await edge.client.post(path, json={"slug": "one", "model": "mock-chat"}, headers=OPERATOR)
    assert_error(dup, 409, "duplicate_slug", "'one'")
    rename = await edge.client.patch(f"{path}/two", json={"slug": "one"}, headers=OPERATOR)
    assert_error(rename, 409, "duplicate_slug")
    # Another project may use the same slug.
    other = await edge.client.post("/admin/projects", json={"name": "p2"}, headers=OPERATOR)
    await create(edge, other.json()["id"], slug="one")


async def test_patch_refuses_nulls_and_unknown_models(edge: Edge) -> None:
    pid = project_id(edge)
    await create(edge, pid)
    path = f"/admin/projects/{pid}/endpoints/summarize"
    for body, contains in (
        ({"active": None}, "'active' cannot be null"),
        ({"model": "nope"}, "nope"),
        ({"params": {"n": 2}}, "'n' is not an endpoint parameter"),
        ({"slug": "UPPER"}, "'slug'"),
    ):
        assert_error(
            await edge.client.patch(path, json=body, headers=OPERATOR), 400, None, contains
        )


async def test_an_alias_or_provider_prefixed_model_is_accepted(edge: Edge) -> None:
    created = await create(edge, project_id(edge), model="fake:mock-chat")
    assert created["model"] == "fake:mock-chat"


# -- the cache follows every write, here at once and on other edges by NATS ----------------------


async def test_writes_patch_this_edge_at_once_and_are_announced(edge: Edge, nats_url: str) -> None:
    pid = project_id(edge)
    nc = await nats.connect(nats_url)
    seen: list[dict] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(orjson.loads(msg.data))

    sub = await nc.subscribe(subjects.ENDPOINTS_CHANGED, cb=on_msg)
    try:
        await nc.flush()
        await create(edge, pid, system_prompt="Hi.")
        found = cache(edge).get(pid, "summarize")
        assert found is not None and found.system_prompt == "Hi." and found.model == "mock-chat"
        assert cache(edge).project_type(pid) == "ai_gateway"
        path = f"/admin/projects/{pid}/endpoints/summarize"
        await edge.client.patch(path, json={"active": False}, headers=OPERATOR)
        assert cache(edge).get(pid, "summarize") is None
        await edge.client.patch(path, json={"active": True}, headers=OPERATOR)
        assert cache(edge).get(pid, "summarize") is not None
        await edge.client.delete(path, headers=OPERATOR)
        assert cache(edge).get(pid, "summarize") is None

        async def four() -> bool:
            return len(seen) == 4

        await eventually(four)
        assert seen == [{"project_id": pid}] * 4
    finally:
        await sub.unsubscribe()
        await nc.close()


async def test_a_change_made_elsewhere_arrives_by_nats(edge: Edge, settings: EdgeSettings) -> None:
    """Another edge wrote the row and announced it; this edge reloads that project."""
    pid = project_id(edge)
    engine = db.create_engine(settings.resolved_database_url())
    nc = await nats.connect(settings.nats_url)
    try:
        async with db.make_sessionmaker(engine)() as session:
            await endpoints_repo.create_endpoint(
                session=session,
                project_id=pid,
                data=EndpointCreate(slug="elsewhere", model="mock-chat"),
            )
        assert cache(edge).get(pid, "elsewhere") is None
        await nc.publish(subjects.ENDPOINTS_CHANGED, orjson.dumps({"project_id": pid}))

        async def arrived() -> bool:
            return cache(edge).get(pid, "elsewhere") is not None

        await eventually(arrived)

        # Anything without a project id: a full reload.
        async with db.make_sessionmaker(engine)() as session:
            row = await endpoints_repo.get_endpoint(
                session=session, project_id=pid, slug="elsewhere"
            )
            assert row is not None
            await endpoints_repo.delete_endpoint(session=session, row=row)
        await nc.publish(subjects.ENDPOINTS_CHANGED, b"{}")

        async def gone() -> bool:
            return cache(edge).get(pid, "elsewhere") is None

        await eventually(gone)
    finally:
        await nc.close()
        await engine.dispose()


async def test_deleting_a_project_deletes_its_endpoints(edge: Edge, settings: EdgeSettings) -> None:
    created = await edge.client.post("/admin/projects", json={"name": "doomed"}, headers=OPERATOR)
    pid = created.json()["id"]
    # The project's type is in the cache as soon as it is created, before any endpoint.
    assert cache(edge).project_type(pid) == "ai_gateway"
    await create(edge, pid)
    assert (await edge.client.delete(f"/admin/projects/{pid}", headers=OPERATOR)).status_code == 204
    assert cache(edge).project_type(pid) is None
    assert cache(edge).get(pid, "summarize") is None
    engine = db.create_engine(settings.resolved_database_url())
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(Endpoint).where(Endpoint.project_id == pid)  # type: ignore[arg-type]
            )
        assert count == 0
    finally:
        await engine.dispose()
