"""A managed credential's own base URL, over real processes (SQLite stack).

The dev stack runs with ``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` and
``ROUTER_ALLOW_PRIVATE_UPSTREAMS`` (its fake provider is on loopback), so a
credential may point at the fake under a distinct path; the fake's request log
shows that path and the credential's key (by hash). The refusal without the
router's flag is a unit test (services/router/tests/test_router_upstreams.py).
A credential URL that keeps failing opens the breaker of that URL only
(services/router/tests/test_router_breaker_scope.py has the details).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack

pytestmark = pytest.mark.timeout(60)

#: A harmless fault spec: the path differs from the catalog's ``/v1``, the answer does not.
CUSTOM_PATH = "/fault/delay_ms=1/v1"
#: A credential URL that answers every call with a 500.
BROKEN_PATH = "/fault/status=500/v1"


@pytest.fixture
def http(sqlite_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sqlite_stack.base_url, timeout=30) as client:
        yield client


def _project_key(
    http: httpx.Client, stack: Stack, provider_key: str | None = None, base_url: str | None = None
) -> str:
    """A new project with a chat key and, given both, a ``fake`` credential at ``base_url``;
    the key."""
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
    if provider_key is None or base_url is None:
        return key
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


def _router_sample(stack: Stack, name: str, **labels: str) -> float | None:
    port = stack.config.ports.router_metrics
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_a_broken_credential_url_opens_only_its_own_breaker(
    sqlite_stack: Stack, http: httpx.Client
) -> None:
    """Project A's URL always 500s: A fails over to ``fake-alt`` and, once the breaker of its
    URL is open, skips it; another project is still served by the ``fake`` deployment."""
    broken = sqlite_stack.fake_provider_url + BROKEN_PATH
    key_a = _project_key(http, sqlite_stack, "sk-broken-" + secrets.token_hex(12), broken)
    key_b = _project_key(http, sqlite_stack)  # no credential
    marker = f"broken-{secrets.token_hex(6)}"
    chat = {"model": "mock-multi", "messages": [{"role": "user", "content": marker}]}

    tried = 0  # A's calls that tried its URL first (2 attempts) before the breaker opened
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the breaker of A's URL never opened"
        resp = http.post(
            "/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key_a}"}
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-switchyard-deployment"] == "fake-alt/mock-chat"
        if resp.headers["x-switchyard-attempts"] == "1":
            break  # skipped at once: its URL's breaker is open
        tried += 1
    assert tried >= 3  # the integration catalog's consecutive_failures
    at_url = [
        r for r in _received(sqlite_stack.fake_provider_url, marker) if BROKEN_PATH in r["path"]
    ]
    assert len(at_url) == tried

    resp = http.post(
        "/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key_b}"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchyard-deployment"] == "fake/mock-chat"
    assert resp.headers["x-switchyard-attempts"] == "1"
    shared = {"provider": "fake", "deployment": "fake/mock-chat"}
    assert _router_sample(sqlite_stack, "switchyard_router_breaker_state", **shared) == 0
    opened = _router_sample(
        sqlite_stack, "switchyard_router_custom_upstream_breakers_open", **shared
    )
    assert opened == 1
