"""Seed 001's endpoint settings through the admin API: every invalid one refused at save
time (create and PATCH) with a 400 naming the field, valid ones stored, shown and compiled
into the cache of this edge and, by NATS, of another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from edge import EdgeSettings, create_app
from edge.endpoints import EndpointCache
from edge.store.models import MAX_SCHEMA_DEPTH, template_variables

from .support import OPERATOR, Edge, RouterServer, admin_settings, auth, eventually

pytestmark = pytest.mark.timeout(30)

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1}},
    "required": ["name"],
}
GUARDRAILS = [
    {"type": "max_length", "max_chars": 4000, "applies_to": "input"},
    {"type": "blocked_terms", "terms": ["project x"], "name": "codenames"},
    {"type": "regex", "patterns": ["(?i)api[_-]?key\\s*[:=]"]},
    {"type": "pii", "entities": ["email", "phone"], "action": "redact", "region": "US"},
]
#: Every new setting, valid, as a client writes it.
FULL: dict[str, Any] = {
    "prompt_template": "Summarize for {{ audience }}: {{text}}",
    "input_schema": SCHEMA,
    "output_schema": {"type": "object", "properties": {"summary": {"type": "string"}}},
    "guardrails": GUARDRAILS,
    "max_request_tokens": 4096,
    "monthly_budget": "25.50",
    "rate_limits": {"per_minute": 60, "per_day": 10000},
    "fallbacks": ["mock-reasoning", "fake:mock-chat"],
    "sessions_enabled": True,
    "session_ttl_seconds": 3600,
}

#: (field, bad value, code, text the message must hold): each refused on create and PATCH.
INVALID: list[tuple[str, Any, str, str]] = [
    ("prompt_template", "Hi {{name", "invalid_value", "'prompt_template'"),
    ("prompt_template", "Hi {{first name}}", "invalid_value", "'prompt_template'"),
    ("prompt_template", "Hi {{}}", "invalid_value", "'prompt_template'"),
    ("prompt_template", 5, "invalid_type", "'prompt_template'"),
    ("input_schema", {"type": "nope"}, "invalid_schema", "input_schema.type"),
    ("input_schema", "object", "invalid_type", "'input_schema'"),
    ("output_schema", {"properties": {"a": {"minimum": "x"}}}, "invalid_schema", "output_schema"),
    ("output_schema", {"$ref": "https://example.com/s.json"}, "invalid_schema", "output_schema"),
    (
        "guardrails",
        [{"type": "max_length", "max_chars": 5}, {"type": "nope"}],
        "invalid_guardrails",
        "guardrails[1].type",
    ),
    (
        "guardrails",
        [{"type": "regex", "patterns": ["(a+)+$"]}],
        "invalid_guardrails",
        "guardrails[0].patterns[0]",
    ),
    (
        "guardrails",
        [{"type": "pii", "action": "explode"}],
        "invalid_guardrails",
        "guardrails[0].action",
    ),
    ("guardrails", {"type": "pii"}, "invalid_type", "'guardrails'"),
    ("max_request_tokens", 0, "integer_below_min_value", "'max_request_tokens'"),
    ("max_request_tokens", -5, "integer_below_min_value", "'max_request_tokens'"),
    ("max_request_tokens", "100", "invalid_type", "'max_request_tokens'"),
    ("monthly_budget", -1, "decimal_below_min_value", "'monthly_budget'"),
    ("monthly_budget", "-0.01", "decimal_below_min_value", "'monthly_budget'"),
    ("monthly_budget", "lots", "invalid_value", "'monthly_budget'"),
    ("monthly_budget", "NaN", "invalid_value", "'monthly_budget'"),
    ("monthly_budget", "1.0000001", "invalid_value", "'monthly_budget'"),
    ("monthly_budget", True, "invalid_type", "'monthly_budget'"),
    ("rate_limits", {"per_minute": 0}, "integer_below_min_value", "'rate_limits.per_minute'"),
    ("rate_limits", {"per_day": -1}, "integer_below_min_value", "'rate_limits.per_day'"),
    ("rate_limits", {"per_minute": "10"}, "invalid_type", "'rate_limits.per_minute'"),
    ("rate_limits", {"per_hour": 10}, "invalid_value", "'rate_limits.per_hour'"),
    ("rate_limits", [10], "invalid_type", "'rate_limits'"),
    ("fallbacks", ["no-such-model"], "model_not_found", "'fallbacks[0]'"),
    ("fallbacks", ["mock-reasoning", "nope"], "model_not_found", "'fallbacks[1]'"),
    ("fallbacks", ["mock-chat"], "invalid_fallback", "'fallbacks[0]'"),
    ("fallbacks", ["mock-reasoning", "mock-reasoning"], "invalid_value", "fallbacks[1] repeats"),
    ("fallbacks", "mock-reasoning", "invalid_type", "'fallbacks'"),
    ("sessions_enabled", "yes", "invalid_type", "'sessions_enabled'"),
    ("session_ttl_seconds", 0, "integer_below_min_value", "'session_ttl_seconds'"),
    ("session_ttl_seconds", 31 * 86400, "integer_above_max_value", "'session_ttl_seconds'"),
]


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(nats_url, db_url, router)


def project_id(edge: Edge) -> str:
    return str(edge.app.state.edge.keys.authenticate(auth()["authorization"]).project_id)


def cache(edge: Edge) -> EndpointCache:
    found: EndpointCache = edge.app.state.edge.endpoints
    return found


def assert_error(resp: httpx.Response, code: str, contains: str) -> None:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["ok"] is False and set(body) == {"ok", "error", "code"}, body
    assert body["code"] == code, body
    assert contains in body["error"], body


async def create(edge: Edge, pid: str, **fields: object) -> httpx.Response:
    body = {"slug": "summarize", "model": "mock-chat", **fields}
    return await edge.client.post(f"/admin/projects/{pid}/endpoints", json=body, headers=OPERATOR)


# -- pure -----------------------------------------------------------------------------------------


def test_template_variables_are_the_placeholders_in_order() -> None:
    assert template_variables('{{a}}, {{ b_2 }} and {{a}}; {"x": {"y": 1}}') == ("a", "b_2")
    assert template_variables("no placeholders }} at all") == ()
    for bad in ("{{", "x {{a", "{{a b}}", "{{1a}}", "{{ }}", "{{a}} {{"):
        with pytest.raises(ValueError, match="character"):
            template_variables(bad)


# -- save time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "code", "contains"), INVALID)
async def test_an_invalid_setting_is_refused_on_create_and_patch(
    edge: Edge, field: str, value: Any, code: str, contains: str
) -> None:
    pid = project_id(edge)
    assert_error(await create(edge, pid, **{field: value}), code, contains)
    assert cache(edge).get(pid, "summarize") is None
    resp = await create(edge, pid)
    assert resp.status_code == 201, resp.text
    before = resp.json()
    path = f"/admin/projects/{pid}/endpoints/summarize"
    assert_error(
        await edge.client.patch(path, json={field: value}, headers=OPERATOR), code, contains
    )
    after = (await edge.client.get(path, headers=OPERATOR)).json()
    assert after == before


async def test_every_setting_round_trips_and_is_compiled_into_the_cache(edge: Edge) -> None:
    pid = project_id(edge)
    resp = await create(edge, pid, **FULL)
    assert resp.status_code == 201, resp.text
    shown = await edge.client.get(f"/admin/projects/{pid}/endpoints/summarize", headers=OPERATOR)
    for body in (resp.json(), shown.json()):
        assert {k: body[k] for k in FULL} == {**FULL, "monthly_budget": "25.5"}
    view = cache(edge).get(pid, "summarize")
    assert view is not None
    assert view.prompt_template == FULL["prompt_template"]
    assert view.input_schema is not None and view.input_schema.schema == SCHEMA
    assert view.output_schema is not None
    assert [g["type"] for g in view.guardrails.dump()] == [g["type"] for g in GUARDRAILS]
    assert view.max_request_tokens == 4096 and view.monthly_budget == Decimal("25.5")
    assert view.rate_limits is not None
    assert (view.rate_limits.per_minute, view.rate_limits.per_day) == (60, 10000)
    assert view.fallbacks == ("mock-reasoning", "fake:mock-chat")
    assert view.sessions_enabled is True and view.session_ttl_seconds == 3600


async def test_defaults_and_a_budget_as_a_json_number(edge: Edge) -> None:
    pid = project_id(edge)
    resp = await create(edge, pid, monthly_budget=0.1)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["monthly_budget"] == "0.1"  # the number as written, never 0.1000000000000000055
    assert body["guardrails"] == [] and body["fallbacks"] == []
    assert body["rate_limits"] is None and body["max_request_tokens"] is None
    assert body["sessions_enabled"] is False and body["session_ttl_seconds"] == 86400
    assert body["prompt_template"] is None and body["input_schema"] is None
    resp = await create(edge, pid, slug="free", monthly_budget=0, input_schema=True)
    assert resp.status_code == 201, resp.text
    assert resp.json()["monthly_budget"] == "0" and resp.json()["input_schema"] is True


async def test_patch_sets_every_setting_and_null_clears_the_nullable_ones(edge: Edge) -> None:
    pid = project_id(edge)
    assert (await create(edge, pid)).status_code == 201
    path = f"/admin/projects/{pid}/endpoints/summarize"
    resp = await edge.client.patch(path, json=FULL, headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rate_limits"] == FULL["rate_limits"]
    view = cache(edge).get(pid, "summarize")
    assert view is not None and len(view.guardrails.dump()) == 4

    nullable = (
        "prompt_template",
        "input_schema",
        "output_schema",
        "max_request_tokens",
        "monthly_budget",
        "rate_limits",
    )
    cleared = {name: None for name in nullable} | {"guardrails": [], "fallbacks": []}
    resp = await edge.client.patch(path, json=cleared, headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    assert {k: resp.json()[k] for k in cleared} == cleared
    assert resp.json()["sessions_enabled"] is True  # left out: kept
    view = cache(edge).get(pid, "summarize")
    assert view is not None and not view.guardrails
    assert view.input_schema is None and view.rate_limits is None and view.fallbacks == ()

    for name in ("guardrails", "fallbacks", "sessions_enabled", "session_ttl_seconds"):
        resp = await edge.client.patch(path, json={name: None}, headers=OPERATOR)
        assert resp.status_code == 400 and f"'{name}' cannot be null" in resp.json()["error"]


async def test_fallbacks_follow_the_model_a_patch_gives(edge: Edge) -> None:
    """A PATCH is checked on the endpoint as it would be saved."""
    pid = project_id(edge)
    assert (await create(edge, pid, fallbacks=["mock-reasoning"])).status_code == 201
    path = f"/admin/projects/{pid}/endpoints/summarize"
    resp = await edge.client.patch(path, json={"model": "mock-reasoning"}, headers=OPERATOR)
    assert_error(resp, "invalid_fallback", "'fallbacks[0]'")
    resp = await edge.client.patch(
        path, json={"model": "mock-reasoning", "fallbacks": ["mock-chat"]}, headers=OPERATOR
    )
    assert resp.status_code == 200, resp.text
    # A provider-prefixed name pins another route of the same model: a fallback worth having.
    resp = await edge.client.patch(
        path, json={"fallbacks": ["fake:mock-reasoning"]}, headers=OPERATOR
    )
    assert resp.status_code == 200, resp.text


def _nested(depth: int) -> dict[str, Any]:
    """A schema of ``depth`` objects, each the ``items`` of the one above."""
    schema: dict[str, Any] = {}
    for _ in range(depth - 1):
        schema = {"items": schema}
    return schema


async def test_a_deep_schema_is_a_400_not_a_recursion_error(edge: Edge) -> None:
    pid = project_id(edge)
    resp = await create(edge, pid, input_schema=_nested(MAX_SCHEMA_DEPTH))
    assert resp.status_code == 201, resp.text
    path = f"/admin/projects/{pid}/endpoints/summarize"
    for depth in (MAX_SCHEMA_DEPTH + 1, 900):
        for field in ("input_schema", "output_schema"):
            body = {field: _nested(depth)}
            resp = await edge.client.patch(path, json=body, headers=OPERATOR)
            assert_error(resp, "invalid_value", f"'{field}'")
            assert "nested more than 64 levels" in resp.json()["error"]
            resp = await create(edge, pid, slug="deep", **body)
            assert_error(resp, "invalid_value", f"'{field}'")


# -- every edge -----------------------------------------------------------------------------------


@pytest.fixture
async def edge_b(settings: EdgeSettings) -> AsyncIterator[Edge]:
    """A second edge app on the same database and NATS (its own caches)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge-b") as client:
            yield Edge(app, client, {})


async def test_a_patch_rebuilds_the_compiled_view_on_another_edge(edge: Edge, edge_b: Edge) -> None:
    pid = project_id(edge)
    assert (await create(edge, pid)).status_code == 201

    async def arrived() -> bool:
        return cache(edge_b).get(pid, "summarize") is not None

    await eventually(arrived, within=2)
    patch = {"guardrails": GUARDRAILS[:2], "input_schema": SCHEMA, "rate_limits": {"per_day": 5}}
    resp = await edge.client.patch(
        f"/admin/projects/{pid}/endpoints/summarize", json=patch, headers=OPERATOR
    )
    assert resp.status_code == 200, resp.text

    async def rebuilt() -> bool:
        view = cache(edge_b).get(pid, "summarize")
        return (
            view is not None
            and [g["type"] for g in view.guardrails.dump()] == ["max_length", "blocked_terms"]
            and view.input_schema is not None
            and view.rate_limits is not None
            and view.rate_limits.per_day == 5
        )

    await eventually(rebuilt, within=1)
