"""Issue 14 point 1 over the real stack: seed 001's endpoint settings through the admin API
and the CLI. Every invalid setting is refused at save time with a 400 naming the field (on
create and on PATCH, and the stored endpoint is untouched); valid ones round-trip through
GET; a change reaches a second edge process within a second.

What the second edge shows: the pipeline steps for guardrails, schemas and limits come
from other branches, so the change is observed through settings calls already act on:
``system_prompt`` (the provider's request log shows the new one for a call made on the
second edge) and ``sessions_enabled`` (the answer carries ``meta.session_id``). The same
announcement rebuilds that edge's compiled view of every other setting
(``services/edge/tests/test_edge_endpoint_config.py`` inspects it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from devtools.stack import Stack
from edge.cli import app as cli_app
from tests.integration.helpers import extra_edge, fake_requests

pytestmark = pytest.mark.timeout(120)

SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
}
GUARDRAILS = [
    {"type": "max_length", "max_chars": 4000, "applies_to": "input"},
    {"type": "blocked_terms", "terms": ["project x"], "name": "codenames"},
    {"type": "regex", "patterns": ["(?i)api[_-]?key\\s*[:=]"]},
    {"type": "pii", "entities": ["email", "phone", "credit_card", "iban"], "action": "redact"},
]
FULL: dict[str, Any] = {
    "prompt_template": "Summarize for {{audience}}: {{ text }}",
    "input_schema": SCHEMA,
    "output_schema": {"type": "object", "properties": {"summary": {"type": "string"}}},
    "guardrails": GUARDRAILS,
    "max_request_tokens": 2048,
    "monthly_budget": "12.75",
    "rate_limits": {"per_minute": 30, "per_day": 1000},
    "fallbacks": ["mock-reasoning"],
    "sessions_enabled": True,
    "session_ttl_seconds": 600,
}
#: (field, bad value, code, what the message must name).
INVALID: list[tuple[str, Any, str, str]] = [
    ("prompt_template", "Hello {{name", "invalid_value", "'prompt_template'"),
    ("prompt_template", "Hello {{two words}}", "invalid_value", "'prompt_template'"),
    ("input_schema", {"type": "objekt"}, "invalid_schema", "input_schema.type"),
    ("output_schema", {"required": "text"}, "invalid_schema", "output_schema.required"),
    ("output_schema", {"$ref": "https://example.com/x.json"}, "invalid_schema", "output_schema"),
    ("guardrails", [{"type": "pii"}, {"type": "toxicity"}], "invalid_guardrails",
     "guardrails[1].type"),
    ("guardrails", [{"type": "regex", "patterns": ["(a+)+$"]}], "invalid_guardrails",
     "guardrails[0].patterns[0]"),
    ("guardrails", [{"type": "max_length", "max_chars": -1}], "invalid_guardrails",
     "guardrails[0].max_chars"),
    ("max_request_tokens", 0, "integer_below_min_value", "'max_request_tokens'"),
    ("max_request_tokens", -100, "integer_below_min_value", "'max_request_tokens'"),
    ("monthly_budget", "-5", "decimal_below_min_value", "'monthly_budget'"),
    ("monthly_budget", -5, "decimal_below_min_value", "'monthly_budget'"),
    ("monthly_budget", "five", "invalid_value", "'monthly_budget'"),
    ("rate_limits", {"per_minute": -1}, "integer_below_min_value", "'rate_limits.per_minute'"),
    ("rate_limits", {"per_day": 0}, "integer_below_min_value", "'rate_limits.per_day'"),
    ("rate_limits", {"per_second": 5}, "invalid_value", "'rate_limits.per_second'"),
    ("fallbacks", ["no-such-model"], "model_not_found", "'fallbacks[0]'"),
    ("fallbacks", ["mock-chat"], "invalid_fallback", "'fallbacks[0]'"),
    ("fallbacks", ["mock-reasoning", "mock-reasoning"], "invalid_value", "fallbacks[1]"),
    ("sessions_enabled", "true", "invalid_type", "'sessions_enabled'"),
    ("session_ttl_seconds", 0, "integer_below_min_value", "'session_ttl_seconds'"),
    ("session_ttl_seconds", 10**8, "integer_above_max_value", "'session_ttl_seconds'"),
]  # fmt: skip


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


class Tenant:
    """A project made through the admin API, managing its endpoints with its own admin key."""

    def __init__(self, http: httpx.Client, stack: Stack) -> None:
        self.http = http
        name = f"cfg-{secrets.token_hex(4)}"
        resp = http.post("/admin/projects", json={"name": name}, headers=_operator(stack))
        assert resp.status_code == 201, resp.text
        self.id: str = resp.json()["id"]
        resp = http.post(
            f"/admin/projects/{self.id}/keys",
            json={"name": "k", "scopes": ["chat", "admin"]},
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        self.headers = {"authorization": f"Bearer {resp.json()['key']}"}
        self.path = f"/admin/projects/{self.id}/endpoints"

    def create(self, slug: str, **fields: Any) -> httpx.Response:
        body = {"slug": slug, "model": "mock-chat", **fields}
        return self.http.post(self.path, json=body, headers=self.headers)

    def patch(self, slug: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.patch(f"{self.path}/{slug}", json=body, headers=self.headers)

    def get(self, slug: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.path}/{slug}", headers=self.headers)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _assert_refused(resp: httpx.Response, code: str, names: str) -> None:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["ok"] is False and body["code"] == code, body
    assert names in body["error"], body


def test_every_invalid_setting_is_400_naming_the_field(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    assert tenant.create("kept", **FULL).status_code == 201
    stored = tenant.get("kept")
    for field, value, code, names in INVALID:
        _assert_refused(tenant.create("refused", **{field: value}), code, names)
        _assert_refused(tenant.patch("kept", {field: value}), code, names)
    assert tenant.get("kept") == stored
    listed = http.get(tenant.path, headers=tenant.headers).json()["data"]
    assert [e["slug"] for e in listed] == ["kept"]

    # An alias is its model: no fallback to the endpoint's own model under another name,
    # and a PATCH of the model is checked against the fallbacks already stored.
    for model, fallback in (("mock-multi", "multi-alias"), ("multi-alias", "mock-multi")):
        resp = tenant.create("alias", model=model, fallbacks=["mock-chat", fallback])
        _assert_refused(resp, "invalid_fallback", "'fallbacks[1]'")
    _assert_refused(
        tenant.patch("kept", {"model": "mock-reasoning"}), "invalid_fallback", "'fallbacks[0]'"
    )


def test_valid_settings_round_trip_through_get(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    created = tenant.create("full", **FULL)
    assert created.status_code == 201, created.text
    expected = {**FULL, "monthly_budget": "12.75"}
    assert {k: created.json()[k] for k in FULL} == expected
    assert {k: tenant.get("full")[k] for k in FULL} == expected

    # A JSON number for the budget is kept as written; PATCH sets every field.
    changed = {
        "prompt_template": "{{question}}",
        "input_schema": True,
        "output_schema": {"type": "array"},
        "guardrails": GUARDRAILS[3:],
        "max_request_tokens": 1,
        "monthly_budget": 0.1,
        "rate_limits": {"per_day": 5},
        "fallbacks": ["mock-reasoning", "fake:mock-chat"],
        "sessions_enabled": False,
        "session_ttl_seconds": 86400 * 30,
    }
    resp = tenant.patch("full", changed)
    assert resp.status_code == 200, resp.text
    assert {k: tenant.get("full")[k] for k in changed} == {**changed, "monthly_budget": "0.1"}

    # Null clears the nullable settings; [] empties the lists.
    cleared = {
        "prompt_template": None,
        "input_schema": None,
        "output_schema": None,
        "max_request_tokens": None,
        "monthly_budget": None,
        "rate_limits": None,
        "guardrails": [],
        "fallbacks": [],
    }
    resp = tenant.patch("full", cleared)
    assert resp.status_code == 200, resp.text
    shown = tenant.get("full")
    assert {k: shown[k] for k in cleared} == cleared
    assert shown["session_ttl_seconds"] == 86400 * 30  # left out: kept

    # Defaults of an endpoint that sets none of them.
    plain = tenant.create("plain")
    assert plain.status_code == 201, plain.text
    assert {k: plain.json()[k] for k in FULL} == {
        "prompt_template": None,
        "input_schema": None,
        "output_schema": None,
        "guardrails": [],
        "max_request_tokens": None,
        "monthly_budget": None,
        "rate_limits": None,
        "fallbacks": [],
        "sessions_enabled": False,
        "session_ttl_seconds": 86400,
    }


def _cli(stack: Stack, *args: str, ok: bool = True) -> Any:
    env = {
        "SWITCHYARD_URL": stack.base_url,
        "SWITCHYARD_ADMIN_TOKEN": stack.config.admin_token or "",
    }
    result = CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)
    if not ok:
        assert result.exit_code == 1, result.output
        return result.stderr
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout) if result.stdout.strip() else None


def test_the_cli_sets_and_clears_every_setting(
    stack: Stack, http: httpx.Client, tmp_path: Path
) -> None:
    tenant = Tenant(http, stack)
    schema_file = tmp_path / "input.json"
    schema_file.write_text(orjson.dumps(SCHEMA).decode())
    created = _cli(
        stack, "endpoints", "create", tenant.id, "cli-full", "--model", "mock-chat",
        "--prompt-template", FULL["prompt_template"],
        "--input-schema", str(schema_file),
        "--output-schema", orjson.dumps(FULL["output_schema"]).decode(),
        *[a for g in GUARDRAILS for a in ("--guardrail", orjson.dumps(g).decode())],
        "--max-request-tokens", "2048",
        "--monthly-budget", "12.75",
        "--rate-limit-per-minute", "30",
        "--rate-limit-per-day", "1000",
        "--fallback", "mock-reasoning",
        "--sessions",
        "--session-ttl-seconds", "10m",
    )  # fmt: skip
    assert {k: created[k] for k in FULL} == FULL
    assert {k: tenant.get("cli-full")[k] for k in FULL} == FULL

    updated = _cli(
        stack, "endpoints", "update", tenant.id, "cli-full",
        "--prompt-template", "", "--input-schema", "none", "--output-schema", "none",
        "--no-guardrails", "--max-request-tokens", "none", "--monthly-budget", "none",
        "--no-rate-limits", "--no-fallbacks", "--no-sessions", "--session-ttl-seconds", "1d",
    )  # fmt: skip
    assert {k: updated[k] for k in FULL} == {
        "prompt_template": None,
        "input_schema": None,
        "output_schema": None,
        "guardrails": [],
        "max_request_tokens": None,
        "monthly_budget": None,
        "rate_limits": None,
        "fallbacks": [],
        "sessions_enabled": False,
        "session_ttl_seconds": 86400,
    }
    # The API's refusal reaches the shell on stderr, naming the field.
    bad = '{"type": "toxicity"}'
    err = _cli(stack, "endpoints", "update", tenant.id, "cli-full", "--guardrail", bad, ok=False)
    assert "guardrails[0].type" in err
    err = _cli(
        stack, "endpoints", "update", tenant.id, "cli-full", "--rate-limit-per-day", "0", ok=False
    )
    assert "rate_limits.per_day" in err


def test_a_settings_change_reaches_a_second_edge_within_a_second(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    tenant = Tenant(http, stack)
    assert tenant.create("moving", system_prompt="Old prompt.").status_code == 201
    with extra_edge(stack) as origin, httpx.Client(base_url=origin, timeout=30) as edge_b:

        def seen_on_b() -> tuple[str, bool]:
            """The system prompt the provider got for a call on edge B, and whether the
            answer was in a session."""
            marker = secrets.token_hex(6)
            resp = edge_b.post(
                f"/api/{tenant.id}/moving", json={"message": marker}, headers=tenant.headers
            )
            assert resp.status_code == 200, resp.text
            [sent] = fake_requests(fake_provider_url, marker)
            first = sent["body"]["messages"][0]
            prompt = str(first["content"]) if first["role"] == "system" else ""
            return prompt, "session_id" in resp.json()["meta"]

        before, after = ("Old prompt.", False), ("New prompt.", True)
        assert seen_on_b() == before
        # Settings a plain call passes once the pipeline acts on them, with the prompt;
        # sessions already act (a call in a session answers with meta.session_id).
        change = {
            "system_prompt": "New prompt.",
            "sessions_enabled": True,
            "session_ttl_seconds": 600,
            "guardrails": GUARDRAILS[:2],
            "rate_limits": {"per_day": 1000},
        }
        resp = tenant.patch("moving", change)
        assert resp.status_code == 200, resp.text
        deadline = time.monotonic() + 1.0
        while (seen := seen_on_b()) != after:
            assert seen == before, seen  # one row, one reload: never half of the change
            assert time.monotonic() < deadline, "the change did not reach edge B within 1 s"
        # Edge B's admin API shows the new settings too.
        shown = edge_b.get(f"{tenant.path}/moving", headers=tenant.headers).json()
        assert {k: shown[k] for k in change} == change
