"""Tenancy over real processes: keys across two edges, isolation, errors, managed credentials.

A second edge (``python -m edge``) joins each stack's database and NATS on
its own port, so "revoked on one replica stops working on every replica
within 1 s" is measured between two processes. The last test greps every
service log of the stack for the provider keys stored here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.helpers import extra_edge

pytestmark = pytest.mark.timeout(120)

#: Provider keys stored as managed credentials here; no log may ever contain them.
PROVIDER_KEYS = (
    "sk-proj-TENANCY-" + secrets.token_hex(12),
    "sk-ant-TENANCY-" + secrets.token_hex(12),
)
WRONG_PROJECT = "Token does not belong to this project."


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class Tenant:
    """A project made through the admin API, with one all-scopes key and one credential."""

    def __init__(self, http: httpx.Client, stack: Stack, name: str, provider_key: str) -> None:
        operator = _operator(stack)
        resp = http.post(
            "/admin/projects", json={"name": name, "settings": {"owner": name}}, headers=operator
        )
        assert resp.status_code == 201, resp.text
        self.project: dict[str, Any] = resp.json()
        self.id: str = self.project["id"]
        scopes = ["chat", "embeddings", "responses", "admin", "collections:write"]
        resp = http.post(
            f"/admin/projects/{self.id}/keys",
            json={"name": f"{name}-key", "scopes": scopes},
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
        self.key_row: dict[str, Any] = resp.json()
        self.key: str = self.key_row.pop("key")
        resp = http.post(
            f"/admin/projects/{self.id}/credentials",
            json={"provider": "fake", "api_key": provider_key},
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
        self.credential: dict[str, Any] = resp.json()
        self.headers = _bearer(self.key)

    def secrets(self) -> list[str]:
        """Strings of this tenant that must never appear in another tenant's answers."""
        return [
            self.id,
            self.project["name"],
            self.key,
            self.key_row["id"],
            self.credential["id"],
            self.credential["fingerprint"],
        ]


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _tenants(http: httpx.Client, stack: Stack) -> tuple[Tenant, Tenant]:
    suffix = secrets.token_hex(4)
    return (
        Tenant(http, stack, f"tenant-a-{suffix}", PROVIDER_KEYS[0]),
        Tenant(http, stack, f"tenant-b-{suffix}", PROVIDER_KEYS[1]),
    )


@pytest.fixture
def second_edge(stack: Stack) -> Iterator[str]:
    """Another edge process on the stack's database and NATS; yields its origin."""
    with extra_edge(stack) as origin:
        yield origin


def _within(seconds: float, probe: Any) -> float:
    """Poll ``probe`` until true; fail unless that took at most ``seconds``; the time taken."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_key_revoked_on_one_edge_stops_on_the_other_within_a_second(
    stack: Stack, http: httpx.Client, second_edge: str
) -> None:
    operator = _operator(stack)
    pid = http.post(
        "/admin/projects", json={"name": f"replicas-{secrets.token_hex(4)}"}, headers=operator
    ).json()["id"]
    created = http.post(
        f"/admin/projects/{pid}/keys", json={"name": "r", "scopes": ["chat"]}, headers=operator
    ).json()
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "hello replica"}]}
    with httpx.Client(base_url=second_edge, timeout=30) as edge_b:

        def status() -> int:
            return edge_b.post(
                "/v1/chat/completions", json=body, headers=_bearer(created["key"])
            ).status_code

        _within(1.0, lambda: status() == 200)
        revoked = http.post(f"/admin/projects/{pid}/keys/{created['id']}/revoke", headers=operator)
        assert revoked.status_code == 200
        _within(1.0, lambda: status() == 401)
        resp = edge_b.post("/v1/chat/completions", json=body, headers=_bearer(created["key"]))
        assert resp.json()["error"]["code"] == "api_key_revoked"

        again = http.post(
            f"/admin/projects/{pid}/keys", json={"name": "d", "scopes": ["chat"]}, headers=operator
        ).json()
        _within(
            1.0, lambda: edge_b.get("/v1/models", headers=_bearer(again["key"])).status_code == 200
        )
        assert http.delete(f"/admin/projects/{pid}", headers=operator).status_code == 204
        _within(
            1.0, lambda: edge_b.get("/v1/models", headers=_bearer(again["key"])).status_code == 401
        )


def test_a_project_with_a_managed_credential_still_needs_a_gateway_key(
    stack: Stack, http: httpx.Client
) -> None:
    a, _ = _tenants(http, stack)
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "free ride?"}]}
    for headers in ({}, _bearer(PROVIDER_KEYS[0]), _bearer("unused")):
        resp = http.post("/v1/chat/completions", json=body, headers=headers)
        assert resp.status_code == 401, resp.text
        assert PROVIDER_KEYS[0] not in resp.text
    assert (
        http.post("/v1/chat/completions", json=body).json()["error"]["message"]
        == "Missing Bearer token."
    )
    assert http.post("/v1/chat/completions", json=body, headers=a.headers).status_code == 200


def test_seed_001_error_table_on_every_route_family(stack: Stack, http: httpx.Client) -> None:
    a, b = _tenants(http, stack)
    operator = _operator(stack)
    revoked = http.post(
        f"/admin/projects/{a.id}/keys", json={"name": "x", "scopes": ["chat"]}, headers=operator
    ).json()
    http.post(f"/admin/projects/{a.id}/keys/{revoked['id']}/revoke", headers=operator)
    embed_only = http.post(
        f"/admin/projects/{a.id}/keys",
        json={"name": "e", "scopes": ["embeddings"]},
        headers=operator,
    ).json()

    chat = {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}
    v1 = [
        ({}, 401, "Missing Bearer token."),
        (_bearer("sk-sy-unknown-unknown-unknown"), 401, None),
        (_bearer(revoked["key"]), 401, "This API key has been revoked."),
        (
            _bearer(embed_only["key"]),
            403,
            "This API key lacks the 'chat' scope required for this endpoint.",
        ),
    ]
    for headers, status, message in v1:
        resp = http.post("/v1/chat/completions", json=chat, headers=headers)
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if message is not None:
            assert error["message"] == message

    admin = [
        ({}, 401, "Missing Bearer token."),
        (_bearer("sk-sy-unknown-unknown-unknown"), 401, None),
        (_bearer(revoked["key"]), 401, "This API key has been revoked."),
        (
            _bearer(embed_only["key"]),
            403,
            "This API key lacks the 'admin' scope required for this endpoint.",
        ),
        (b.headers, 403, WRONG_PROJECT),
    ]
    for headers, status, message in admin:
        resp = http.get(f"/admin/projects/{a.id}/keys", headers=headers)
        assert resp.status_code == status, resp.text
        assert resp.json()["ok"] is False
        if message is not None:
            assert resp.json()["error"] == message


def test_a_key_of_project_b_never_reads_or_uses_project_a(stack: Stack, http: httpx.Client) -> None:
    a, b = _tenants(http, stack)
    resp = http.post(
        f"/admin/projects/{a.id}/gateways",
        json={"name": "a-gw", "model": "mock-chat"},
        headers=a.headers,
    )
    assert resp.status_code == 201, resp.text
    a_gateway: dict[str, Any] = resp.json()
    a_paths = [
        ("GET", f"/admin/projects/{a.id}"),
        ("PATCH", f"/admin/projects/{a.id}"),
        ("DELETE", f"/admin/projects/{a.id}"),
        ("GET", f"/admin/projects/{a.id}/keys"),
        ("POST", f"/admin/projects/{a.id}/keys"),
        ("GET", f"/admin/projects/{a.id}/keys/{a.key_row['id']}"),
        ("POST", f"/admin/projects/{a.id}/keys/{a.key_row['id']}/revoke"),
        ("DELETE", f"/admin/projects/{a.id}/keys/{a.key_row['id']}"),
        ("GET", f"/admin/projects/{a.id}/credentials"),
        ("POST", f"/admin/projects/{a.id}/credentials"),
        ("DELETE", f"/admin/projects/{a.id}/credentials/{a.credential['id']}"),
        ("GET", f"/admin/projects/{a.id}/endpoints"),
        ("POST", f"/admin/projects/{a.id}/endpoints"),
        ("GET", f"/admin/projects/{a.id}/endpoints/any"),
        ("PATCH", f"/admin/projects/{a.id}/endpoints/any"),
        ("DELETE", f"/admin/projects/{a.id}/endpoints/any"),
        ("GET", f"/admin/projects/{a.id}/gateways"),
        ("POST", f"/admin/projects/{a.id}/gateways"),
        ("GET", f"/admin/projects/{a.id}/gateways/{a_gateway['id']}"),
        ("PATCH", f"/admin/projects/{a.id}/gateways/{a_gateway['id']}"),
        ("DELETE", f"/admin/projects/{a.id}/gateways/{a_gateway['id']}"),
        ("POST", f"/api/{a.id}/any"),
        ("POST", f"/api/{a.id}/chat/completions"),
        ("GET", f"/admin/projects/{a.id}/channel-key"),
        ("POST", f"/admin/projects/{a.id}/channel-key"),
    ]
    payload = {"name": "takeover", "scopes": ["admin"], "provider": "fake", "api_key": "sk-evil"}
    for method, path in a_paths:
        resp = http.request(method, path, headers=b.headers, json=payload)
        # Scoped by path to a project that is not B's: 403, before any lookup.
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json() == {"ok": False, "error": WRONG_PROJECT, "code": "wrong_project"}

    # A's ids under B's own path: "not found", as if they did not exist.
    for method, path in (
        ("GET", f"/admin/projects/{b.id}/keys/{a.key_row['id']}"),
        ("POST", f"/admin/projects/{b.id}/keys/{a.key_row['id']}/revoke"),
        ("DELETE", f"/admin/projects/{b.id}/keys/{a.key_row['id']}"),
        ("DELETE", f"/admin/projects/{b.id}/credentials/{a.credential['id']}"),
        ("GET", f"/admin/projects/{b.id}/gateways/{a_gateway['id']}"),
        ("PATCH", f"/admin/projects/{b.id}/gateways/{a_gateway['id']}"),
        ("DELETE", f"/admin/projects/{b.id}/gateways/{a_gateway['id']}"),
    ):
        resp = http.request(method, path, headers=b.headers, json={})
        assert resp.status_code == 404, (method, path, resp.text)
        assert not any(s in resp.text for s in a.secrets())

    # A's gateway as B's model, on each gateway path: OpenAI's 404, as if it did not exist.
    for path in ("/v1/chat/completions", "/api/v1/chat-completions", "/api/v1/chat/completions"):
        for model in (a_gateway["id"], a_gateway["short_name"]):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            resp = http.post(path, headers=b.headers, json=body)
            assert resp.status_code == 404, (path, resp.text)
            assert resp.json()["error"]["code"] == "model_not_found"

    # Listings show B's own things only.
    for path in (
        "/admin/projects",
        f"/admin/projects/{b.id}/keys",
        f"/admin/projects/{b.id}/credentials",
        f"/admin/projects/{b.id}/gateways",
    ):
        resp = http.get(path, headers=b.headers)
        assert resp.status_code == 200
        assert not any(s in resp.text for s in a.secrets()), path

    # Nothing of A changed, and A's key still works.
    resp = http.get(f"/admin/projects/{a.id}/keys/{a.key_row['id']}", headers=a.headers)
    assert resp.json()["revoked_at"] is None
    assert [
        c["id"]
        for c in http.get(f"/admin/projects/{a.id}/credentials", headers=a.headers).json()["data"]
    ] == [a.credential["id"]]
    assert (
        http.get(f"/admin/projects/{a.id}", headers=a.headers).json()["name"] == a.project["name"]
    )


def test_stored_responses_are_invisible_to_other_projects(stack: Stack, http: httpx.Client) -> None:
    a, b = _tenants(http, stack)
    secret_text = "tenant A secret " + secrets.token_hex(6)
    created = http.post(
        "/v1/responses", json={"model": "mock-reasoning", "input": secret_text}, headers=a.headers
    )
    if created.status_code == 404 and created.json()["error"]["code"] == "unknown_url":
        pytest.skip("/v1/responses is not mounted yet")
    assert created.status_code == 200, created.text
    rid = created.json()["id"]
    assert http.get(f"/v1/responses/{rid}", headers=a.headers).status_code == 200
    for method, path, body in (
        ("GET", f"/v1/responses/{rid}", None),
        ("GET", f"/v1/responses/{rid}/input_items", None),
        ("DELETE", f"/v1/responses/{rid}", None),
        (
            "POST",
            "/v1/responses",
            {"model": "mock-reasoning", "input": "go on", "previous_response_id": rid},
        ),
    ):
        resp = http.request(method, path, headers=b.headers, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
        assert secret_text not in resp.text and a.id not in resp.text
    assert http.get(f"/v1/responses/{rid}", headers=a.headers).status_code == 200


def test_collections_are_invisible_to_other_projects(stack: Stack, http: httpx.Client) -> None:
    """A's collection and document: 404 to B on every collection route, absent from B's list."""
    a, b = _tenants(http, stack)
    secret_text = "tenant A knowledge " + secrets.token_hex(6)
    col = http.post("/v1/collections", json={"name": f"kb-{a.id}"}, headers=a.headers)
    assert col.status_code == 200, col.text
    base = f"/v1/collections/{col.json()['id']}"
    doc = http.post(f"{base}/documents", json={"name": "s", "text": secret_text}, headers=a.headers)
    assert doc.status_code == 200, doc.text
    doc_path = f"{base}/documents/{doc.json()['id']}"
    for method, path, body in (
        ("GET", base, None),
        ("DELETE", base, None),
        ("GET", f"{base}/documents", None),
        ("POST", f"{base}/documents", {"name": "planted", "text": "planted by B"}),
        ("GET", doc_path, None),
        ("DELETE", doc_path, None),
        ("POST", f"{base}/query", {"query": secret_text}),
    ):
        resp = http.request(method, path, headers=b.headers, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
        assert secret_text not in resp.text and a.id not in resp.text
    listed = http.get("/v1/collections", headers=b.headers)
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert http.get(doc_path, headers=a.headers).status_code == 200
    docs = http.get(f"{base}/documents", headers=a.headers).json()["data"]
    assert [d["name"] for d in docs] == ["s"]


def test_sessions_are_invisible_to_other_projects(stack: Stack, http: httpx.Client) -> None:
    """A's Gateway API session: B's key on A's path is 403 before any lookup; A's session id
    on B's own endpoint of the same slug is 404 as if it never existed; A's history never
    shows in B's answers or reaches the model in B's calls; A's session is untouched."""
    a, b = _tenants(http, stack)
    for tenant in (a, b):
        resp = http.post(
            f"/admin/projects/{tenant.id}/endpoints",
            json={"slug": "talk", "model": "mock-chat", "sessions_enabled": True},
            headers=tenant.headers,
        )
        assert resp.status_code == 201, resp.text
    secret_text = "tenant A session secret " + secrets.token_hex(6)
    resp = http.post(f"/api/{a.id}/talk", json={"message": secret_text}, headers=a.headers)
    assert resp.status_code == 200, resp.text
    sid = resp.json()["meta"]["session_id"]
    probe = {"message": "what did A say?", "session_id": sid}
    for path, body in (
        (f"/api/{a.id}/talk", probe),
        (f"/api/{a.id}/chat/completions", {"endpoint": "talk", **probe}),
    ):
        resp = http.post(path, json=body, headers=b.headers)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json() == {"ok": False, "error": WRONG_PROJECT, "code": "wrong_project"}
    for path, body in (
        (f"/api/{b.id}/talk", probe),
        (f"/api/{b.id}/chat/completions", {"endpoint": "talk", **probe}),
    ):
        resp = http.post(path, json=body, headers=b.headers)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["code"] == "session_not_found"
        assert secret_text not in resp.text and a.id not in resp.text
    # B starting its own session never gets A's turns.
    resp = http.post(f"/api/{b.id}/talk", json={"message": "hello"}, headers=b.headers)
    assert resp.status_code == 200 and resp.json()["meta"]["session_id"] != sid
    assert secret_text not in resp.text
    # A's session still answers A, with its history.
    resp = http.post(
        f"/api/{a.id}/talk", json={"message": "go on", "session_id": sid}, headers=a.headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["meta"]["session_id"] == sid


def test_channel_history_is_invisible_to_other_keys(stack: Stack, http: httpx.Client) -> None:
    """Channel A's session: B's channel key with the same session id sees [] and its model never
    gets A's turns; a gateway key is not a channel key (401) nor a channel key a gateway key."""
    channels = []
    for _ in range(2):
        resp = http.post(
            "/admin/projects",
            json={
                "name": f"iso-ch-{secrets.token_hex(4)}",
                "type": "channel",
                "settings": {"model": "mock-chat"},
            },
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        pid = resp.json()["id"]
        key = http.post(f"/admin/projects/{pid}/channel-key", headers=_operator(stack))
        channels.append({"x-channel-key": key.json()["key"]})
    ch_a, ch_b = channels
    secret_text = "channel A secret " + secrets.token_hex(6)
    body = {"message": secret_text, "session_id": "same"}
    assert http.post("/channel/v1/chat", json=body, headers=ch_a).status_code == 200
    resp = http.get("/channel/v1/history?session_id=same", headers=ch_b)
    assert resp.status_code == 200 and resp.json()["messages"] == []
    resp = http.post("/channel/v1/chat", json={**body, "message": "hi"}, headers=ch_b)
    assert resp.status_code == 200 and secret_text not in resp.text
    a, _ = _tenants(http, stack)
    resp = http.get("/channel/v1/history?session_id=same", headers=a.headers)
    assert resp.status_code == 401 and secret_text not in resp.text
    bearer = {"authorization": f"Bearer {ch_a['x-channel-key']}"}
    resp = http.post("/v1/chat/completions", json={"model": "mock-chat"}, headers=bearer)
    assert resp.status_code == 401


def test_no_log_of_any_service_contains_a_provider_key(stack: Stack) -> None:
    """Runs last in this module: every provider key above went through the stack by now."""
    logs = sorted(stack.log_dir.glob("*.log"))
    assert any(path.name == "edge.log" for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        for key in PROVIDER_KEYS:
            assert key not in text, f"{path.name} contains a provider key"
            assert key[-12:] not in text, f"{path.name} contains part of a provider key"
