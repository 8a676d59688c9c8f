"""A managed credential's own base URL, over real processes (SQLite stack).

The dev stack runs with ``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` and
``ROUTER_ALLOW_PRIVATE_UPSTREAMS`` (its fake provider is on loopback), so a
credential may point at the fake under a distinct path; the fake's request log
shows that path and the credential's key (by hash). The refusal without the
router's flag is a unit test (services/router/tests/test_router_upstreams.py).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import Stack

pytestmark = pytest.mark.timeout(60)

#: A harmless fault spec: the path differs from the catalog's ``/v1``, the answer does not.
CUSTOM_PATH = "/fault/delay_ms=1/v1"


@pytest.fixture
def http(sqlite_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sqlite_stack.base_url, timeout=30) as client:
        yield client


def _project_key(http: httpx.Client, stack: Stack, provider_key: str, base_url: str) -> str:
    """A new project with a chat key and a ``fake`` credential at ``base_url``; the key."""
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    name = f"upstream-{secrets.token_hex(4)}"
    resp = http.post("/admin/projects", json={"name": name}, headers=operator)
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    resp = http.post(
        f"/admin/projects/{pid}/keys", json={"name": name, "scopes": ["chat"]}, headers=operator
    )
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    body = {"provider": "fake", "api_key": provider_key, "base_url": base_url}
    resp = http.post(f"/admin/projects/{pid}/credentials", json=body, headers=operator)
    assert resp.status_code == 201, resp.text
    assert resp.json()["base_url"] == base_url and provider_key not in resp.text
    return key


def _received(fake_url: str, marker: str) -> list[dict[str, Any]]:
    requests = httpx.get(f"{fake_url}/_fake/requests", timeout=10).json()["requests"]
    return [r for r in requests if marker in str(r.get("body"))]


def test_a_credentials_base_url_receives_its_calls_with_its_key(
    sqlite_stack: Stack, http: httpx.Client
) -> None:
    provider_key = "sk-upstream-" + secrets.token_hex(12)
    custom = sqlite_stack.fake_provider_url + CUSTOM_PATH
    key = _project_key(http, sqlite_stack, provider_key, custom)
    marker = f"upstream-{secrets.token_hex(6)}"
    chat = {"model": "mock-chat", "messages": [{"role": "user", "content": marker}]}
    headers = {"authorization": f"Bearer {key}"}

    resp = http.post("/v1/chat/completions", json=chat, headers=headers)
    assert resp.status_code == 200, resp.text
    with http.stream(
        "POST", "/v1/chat/completions", json={**chat, "stream": True}, headers=headers
    ) as streamed:
        assert streamed.status_code == 200
        assert "data: [DONE]" in streamed.read().decode()

    received = _received(sqlite_stack.fake_provider_url, marker)
    assert [r["path"] for r in received] == [f"{CUSTOM_PATH}/chat/completions"] * 2
    expected = hashlib.sha256(provider_key.encode()).hexdigest()
    assert {r["bearer_sha256"] for r in received} == {expected}
