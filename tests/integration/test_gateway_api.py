"""Seed 001's Gateway API over the real stack: endpoints made through the admin API and the CLI,
both routes, failover, streaming, seed 001's error table, isolation, usage by endpoint, and an
endpoint change reaching a second edge process.

Every call carries a fresh marker in its user text, so the fake provider's request log shows
exactly what reached the provider for that call (``helpers.fake_requests``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from devtools.stack import Stack
from edge.cli import app as cli_app
from tests.integration.helpers import (
    expected_reply,
    extra_edge,
    fake_requests,
    poll,
    sse_data,
)

pytestmark = pytest.mark.timeout(120)

WRONG_PROJECT = "Token does not belong to this project."
META_HEADERS = {
    "request_id": "x-request-id",
    "endpoint": "x-switchyard-endpoint",
    "provider": "x-switchyard-provider",
    "deployment": "x-switchyard-deployment",
    "attempts": "x-switchyard-attempts",
}


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _marker() -> str:
    return secrets.token_hex(6)


class Tenant:
    """A project made through the admin API with a chat+admin key, managing its own endpoints."""

    def __init__(self, http: httpx.Client, stack: Stack, *, type: str = "ai_gateway") -> None:
        self.http = http
        name = f"gw-{type}-{secrets.token_hex(4)}"
        resp = http.post(
            "/admin/projects", json={"name": name, "type": type}, headers=_operator(stack)
        )
        assert resp.status_code == 201, resp.text
        self.id: str = resp.json()["id"]
        self.key = self.new_key(stack, ["chat", "admin"])["key"]
        self.headers = _bearer(self.key)

    def new_key(self, stack: Stack, scopes: list[str]) -> dict[str, Any]:
        resp = self.http.post(
            f"/admin/projects/{self.id}/keys",
            json={"name": "k", "scopes": scopes},
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def endpoint(self, slug: str, model: str = "mock-chat", **fields: Any) -> dict[str, Any]:
        """Create an endpoint with the project's own admin key."""
        resp = self.http.post(
            f"/admin/projects/{self.id}/endpoints",
            json={"slug": slug, "model": model, **fields},
            headers=self.headers,
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def call(self, slug: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.http.post(f"/api/{self.id}/{slug}", json=body, headers=self.headers, **kw)

    def dispatch(self, slug: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            f"/api/{self.id}/chat/completions",
            json={"endpoint": slug, **body},
            headers=self.headers,
        )


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _assert_answer(resp: httpx.Response, slug: str) -> dict[str, Any]:
    """A 200 in seed 001's shape whose meta equals the response headers."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is True
    assert set(body) == {
        "ok",
        "id",
        "model",
        "content",
        "finish_reason",
        "usage",
        "meta",
        "generation_context",
    }
    assert body["finish_reason"] == "stop" and body["id"].startswith("chatcmpl")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    meta = body["meta"]
    assert set(meta) == set(META_HEADERS)
    assert meta["endpoint"] == slug
    for field, header in META_HEADERS.items():
        assert str(meta[field]) == resp.headers[header], field
    return dict(body)


def _assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["ok"] is False and isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


def _reached_provider(stack: Stack, marker: str) -> dict[str, Any]:
    """The one body carrying ``marker`` that reached the fake provider (its healthy route)."""
    found = [
        r
        for r in fake_requests(stack.fake_provider_url, marker)
        if r["path"] == "/v1/chat/completions"
    ]
    assert len(found) == 1, found
    return dict(found[0]["body"])


# -- success --------------------------------------------------------------------------------------


def test_both_routes_with_message_and_messages(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint(
        "summarize",
        system_prompt="Summarize in one line.",
        params={"temperature": 0.2, "max_tokens": 50},
    )
    marker = _marker()
    one = tenant.call("summarize", {"message": f"Explain {marker}"})
    body = _assert_answer(one, "summarize")
    sent = _reached_provider(stack, marker)
    assert sent["messages"] == [
        {"role": "system", "content": "Summarize in one line."},
        {"role": "user", "content": f"Explain {marker}"},
    ]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50
    assert body["content"] == expected_reply(sent)
    assert body["meta"]["attempts"] == 1 and body["meta"]["provider"] == "fake"

    marker = _marker()
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": f"second {marker}"},
    ]
    two = tenant.dispatch("summarize", {"messages": messages})
    body = _assert_answer(two, "summarize")
    sent = _reached_provider(stack, marker)
    assert sent["messages"] == [{"role": "system", "content": "Summarize in one line."}, *messages]
    assert body["content"] == expected_reply(sent)

    # The other two combinations.
    _assert_answer(tenant.call("summarize", {"messages": messages}), "summarize")
    _assert_answer(tenant.dispatch("summarize", {"message": "hello"}), "summarize")


def test_failover_shows_its_attempts_and_the_fallback(stack: Stack, http: httpx.Client) -> None:
    """``fo-api``'s primary always answers 500 (a provider no other test uses, so its breaker
    is closed): the first call fails over and its meta names the fallback and two attempts."""
    tenant = Tenant(http, stack)
    tenant.endpoint("resilient", model="fo-api")
    resp = tenant.call("resilient", {"message": f"fo {_marker()}"})
    body = _assert_answer(resp, "resilient")
    assert body["meta"]["attempts"] == 2, body
    assert body["meta"]["deployment"] == "fallback" and body["meta"]["provider"] == "fake"
    assert resp.headers["x-switchyard-attempts"] == "2"


def test_stream_when_enabled_and_unary_when_not(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("live", streaming_enabled=True)
    tenant.endpoint("still")
    marker = _marker()
    resp = tenant.call("live", {"message": f"stream {marker}", "stream": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    data = sse_data(resp.text.splitlines())
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text == expected_reply(_reached_provider(stack, marker))
    assert resp.headers["x-switchyard-endpoint"] == "live"
    assert resp.headers["x-switchyard-provider"] == "fake"
    assert resp.headers["x-switchyard-attempts"] == "1"

    resp = tenant.call("still", {"message": "no stream here", "stream": True})
    _assert_answer(resp, "still")
    assert resp.headers["content-type"] == "application/json"


# -- seed 001's error table -----------------------------------------------------------------------


def test_seed_001_error_table(stack: Stack, http: httpx.Client) -> None:
    a, b = Tenant(http, stack), Tenant(http, stack)
    a.endpoint("summarize", system_prompt="A's private prompt")
    a.endpoint("off", active=False)
    revoked = a.new_key(stack, ["chat"])
    http.post(f"/admin/projects/{a.id}/keys/{revoked['id']}/revoke", headers=_operator(stack))
    embed_only = a.new_key(stack, ["embeddings"])
    url = f"/api/{a.id}/summarize"
    ok = {"message": "hi"}

    body = _assert_error(http.post(url, json=ok), 401)
    assert body["error"] == "Missing Bearer token."
    _assert_error(http.post(url, json=ok, headers=_bearer("sk-sy-unknown-unknown-unknown")), 401)
    _assert_error(http.post(url, json=ok, headers=_bearer(revoked["key"])), 401, "api_key_revoked")
    body = _assert_error(
        http.post(url, json=ok, headers=_bearer(embed_only["key"])), 403, "insufficient_scope"
    )
    assert "'chat' scope" in body["error"]
    for path, payload in (
        (url, ok),
        (f"/api/{a.id}/chat/completions", {"endpoint": "summarize", **ok}),
    ):
        resp = http.post(path, json=payload, headers=b.headers)
        assert resp.json() == {"ok": False, "error": WRONG_PROJECT, "code": "wrong_project"}
        assert resp.status_code == 403
    _assert_error(a.call("nope", ok), 404, "endpoint_not_found")
    _assert_error(a.call("off", ok), 404, "endpoint_not_found")
    _assert_error(a.dispatch("off", ok), 404, "endpoint_not_found")
    _assert_error(a.call("summarize", {"message": "hi", "temperature": 2}), 400, "invalid_value")
    _assert_error(a.call("summarize", {}), 400)
    _assert_error(
        a.call("summarize", {"message": "hi", "session_id": "s"}), 400, "sessions_disabled"
    )

    channel = Tenant(http, stack, type="channel")
    body = _assert_error(channel.call("anything", ok), 400, "wrong_project_type")
    assert "ai_gateway" in body["error"]


def test_a_budget_refusal_is_422(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("capped", params={"max_tokens": 20})
    resp = http.put(
        f"/admin/projects/{tenant.id}/budget",
        json={"limit": "0.000000001", "period": "monthly"},
        headers=tenant.headers,
    )
    assert resp.status_code == 200, resp.text
    marker = _marker()
    body = _assert_error(tenant.call("capped", {"message": marker}), 422, "insufficient_quota")
    assert "budget" in body["error"]
    assert fake_requests(stack.fake_provider_url, marker) == []


def test_a_failed_failover_is_502_with_its_attempts(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("doomed", model="fo-api-down")
    body = _assert_error(tenant.call("doomed", {"message": "hi"}), 502, "all_providers_failed")
    assert body["attempts"], body
    assert {a["provider"] for a in body["attempts"]} <= {"fo-503", "fo-reset"}


# -- isolation ------------------------------------------------------------------------------------


def test_another_project_sees_nothing_of_an_endpoint(stack: Stack, http: httpx.Client) -> None:
    a, b = Tenant(http, stack), Tenant(http, stack)
    secret_prompt = "A's secret prompt " + secrets.token_hex(4)
    created = a.endpoint("private-" + secrets.token_hex(3), system_prompt=secret_prompt)
    slug = created["slug"]
    leaks = (secret_prompt, slug, created["id"])
    calls = [
        ("POST", f"/api/{a.id}/{slug}", {"message": "hi"}),
        ("POST", f"/api/{a.id}/chat/completions", {"endpoint": slug, "message": "hi"}),
        ("GET", f"/admin/projects/{a.id}/endpoints", None),
        ("POST", f"/admin/projects/{a.id}/endpoints", {"slug": "mine", "model": "mock-chat"}),
        ("GET", f"/admin/projects/{a.id}/endpoints/{slug}", None),
        ("PATCH", f"/admin/projects/{a.id}/endpoints/{slug}", {"active": False}),
        ("DELETE", f"/admin/projects/{a.id}/endpoints/{slug}", None),
    ]
    for method, path, payload in calls:
        resp = http.request(method, path, json=payload, headers=b.headers)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json() == {"ok": False, "error": WRONG_PROJECT, "code": "wrong_project"}
    # A's slug under B's own paths: "not found", as if it did not exist.
    for resp in (
        b.call(slug, {"message": "hi"}),
        http.get(f"/admin/projects/{b.id}/endpoints/{slug}", headers=b.headers),
    ):
        assert resp.status_code == 404, resp.text
        assert not any(s in resp.text for s in leaks)
    listed = http.get(f"/admin/projects/{b.id}/endpoints", headers=b.headers)
    assert listed.json() == {"data": []}
    # Nothing of A changed.
    _assert_answer(a.call(slug, {"message": "still mine"}), slug)


# -- usage by endpoint, the CLI, a second edge ----------------------------------------------------


def test_usage_by_endpoint_shows_the_slug(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("billed")
    tenant.endpoint("also-billed")
    _assert_answer(tenant.call("billed", {"message": "one"}), "billed")
    _assert_answer(tenant.call("billed", {"message": "two"}), "billed")
    _assert_answer(tenant.dispatch("also-billed", {"message": "three"}), "also-billed")

    def rows() -> dict[str, int] | None:
        resp = http.get(
            f"/admin/projects/{tenant.id}/usage",
            params={"group_by": "endpoint"},
            headers=tenant.headers,
        )
        assert resp.status_code == 200, resp.text
        found = {row["group"]: row["requests"] for row in resp.json()["rows"]}
        return found if found == {"billed": 2, "also-billed": 1} else None

    poll(rows, timeout=30, interval=0.2)


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


def test_the_cli_manages_endpoints(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    pid = tenant.id
    created = _cli(
        stack,
        "endpoints",
        "create",
        pid,
        "cli-ep",
        "--model",
        "mock-chat",
        "--system-prompt",
        "Be terse.",
        "--params",
        '{"temperature": 0.1}',
        "--streaming",
    )
    assert created["slug"] == "cli-ep" and created["streaming_enabled"] is True
    assert created["params"] == {"temperature": 0.1}
    assert [e["slug"] for e in _cli(stack, "endpoints", "list", pid)["data"]] == ["cli-ep"]
    assert _cli(stack, "endpoint", "show", pid, "cli-ep")["system_prompt"] == "Be terse."
    _assert_answer(tenant.call("cli-ep", {"message": "via cli"}), "cli-ep")
    updated = _cli(stack, "endpoints", "update", pid, "cli-ep", "--system-prompt", "", "--inactive")
    assert updated["system_prompt"] is None and updated["active"] is False
    _assert_error(tenant.call("cli-ep", {"message": "off"}), 404, "endpoint_not_found")
    assert "not an endpoint parameter" in _cli(
        stack, "endpoints", "update", pid, "cli-ep", "--params", '{"n": 2}', ok=False
    )
    assert "already exists" in _cli(
        stack, "endpoints", "create", pid, "cli-ep", "--model", "mock-chat", ok=False
    )
    assert _cli(stack, "endpoints", "delete", pid, "cli-ep") is None
    assert _cli(stack, "endpoints", "list", pid) == {"data": []}


def test_an_endpoint_change_reaches_another_edge_within_a_second(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    with extra_edge(stack) as origin, httpx.Client(base_url=origin, timeout=30) as edge_b:

        def status(slug: str) -> int:
            return edge_b.post(
                f"/api/{tenant.id}/{slug}", json={"message": "hi"}, headers=tenant.headers
            ).status_code

        def within(seconds: float, probe: Any) -> None:
            deadline = time.monotonic() + seconds
            while not probe():
                assert time.monotonic() < deadline, f"not within {seconds} s"
                time.sleep(0.01)

        assert status("late") == 404
        tenant.endpoint("late")
        within(1.0, lambda: status("late") == 200)
        resp = http.patch(
            f"/admin/projects/{tenant.id}/endpoints/late",
            json={"active": False},
            headers=tenant.headers,
        )
        assert resp.status_code == 200
        within(1.0, lambda: status("late") == 404)
