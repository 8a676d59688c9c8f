"""A JSON string holding NUL (``\\u0000``) is refused with 400 on every API, on PostgreSQL.

d10's fuzz on PostgreSQL found 5xx for such bodies (``POST /admin/projects`` with NUL in
``name``): PostgreSQL's ``text`` and ``jsonb`` cannot hold NUL, SQLite can, so only this
backend shows the failed write. The edge refuses the body before anything is stored or
sent, in the shape of the API that was called. Runs on the PostgreSQL stack only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import Stack

pytestmark = pytest.mark.timeout(240)  # the first test pays for the PostgreSQL stack's start

NUL_NAME = b'{"name":"nul-\\u0000-project","type":"ai_gateway"}'


@pytest.fixture
def http(postgres_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=postgres_stack.base_url, timeout=30) as client:
        yield client


def _bearer(token: str | None) -> dict[str, str]:
    assert token is not None
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def test_admin_refuses_nul_in_a_value_and_stores_nothing(
    http: httpx.Client, postgres_stack: Stack
) -> None:
    operator = _bearer(postgres_stack.config.admin_token)
    resp = http.post("/admin/projects", content=NUL_NAME, headers=operator)
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"ok": False, "error": resp.json()["error"], "code": "invalid_value"}
    assert "NUL" in resp.json()["error"]
    listed = http.get("/admin/projects", headers=operator)
    assert listed.status_code == 200, listed.text
    assert "nul-" not in listed.text


def test_admin_refuses_nul_in_a_key(http: httpx.Client, postgres_stack: Stack) -> None:
    body = b'{"name":"ok","type":"ai_gateway","k\\u0000":1}'
    resp = http.post(
        "/admin/projects", content=body, headers=_bearer(postgres_stack.config.admin_token)
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_value"


def test_v1_refuses_nul_in_the_openai_shape(http: httpx.Client, postgres_stack: Stack) -> None:
    body = b'{"model":"mock-chat","messages":[{"role":"user","content":"a\\u0000b"}]}'
    resp = http.post(
        "/v1/chat/completions", content=body, headers=_bearer(postgres_stack.config.api_key)
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_value"


def test_messages_refuses_nul_in_anthropic_shape(http: httpx.Client, postgres_stack: Stack) -> None:
    body = b'{"model":"mock-chat","max_tokens":5,"messages":[{"role":"user","content":"\\u0000"}]}'
    resp = http.post("/v1/messages", content=body, headers=_bearer(postgres_stack.config.api_key))
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_gateway_api_refuses_nul_in_the_ok_shape(http: httpx.Client, postgres_stack: Stack) -> None:
    operator = _bearer(postgres_stack.config.admin_token)
    name = f"nul-gw-{secrets.token_hex(4)}"
    project = http.post(
        "/admin/projects", json={"name": name, "type": "ai_gateway"}, headers=operator
    )
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    key = http.post(
        f"/admin/projects/{pid}/keys",
        json={"name": "k", "scopes": ["chat", "admin"]},
        headers=operator,
    )
    assert key.status_code == 201, key.text
    tenant = _bearer(key.json()["key"])
    made = http.post(
        f"/admin/projects/{pid}/endpoints",
        json={"slug": "nul", "model": "mock-chat"},
        headers=tenant,
    )
    assert made.status_code == 201, made.text
    body = b'{"messages":[{"role":"user","content":"a\\u0000b"}]}'
    resp = http.post(f"/api/{pid}/nul", content=body, headers=tenant)
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"ok": False, "error": resp.json()["error"], "code": "invalid_value"}
    # An admin body with NUL on the tenant's own key: the ok shape too.
    bad = http.post(
        f"/admin/projects/{pid}/endpoints",
        content=b'{"slug":"n2","model":"mock-chat","system_prompt":"\\u0000"}',
        headers=tenant,
    )
    assert bad.status_code == 400, bad.text
    assert bad.json()["code"] == "invalid_value"
