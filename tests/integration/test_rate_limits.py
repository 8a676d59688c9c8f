"""Rate limits over the real stack (issue 14 point 5): counters shared by two edge processes on
one NATS, bursts across a real minute boundary, a true Retry-After, OpenAI's 429 and
``x-ratelimit-*`` headers read by the official SDK, the Gateway API's 429, ``allowed_models``
403 before any provider call, and a tokens-per-minute limit settled from the call's usage.

Waits poll the wall clock (``_wait_until``); every loop is bounded. The limiter keeps no
state in the database, so these tests mean the same on both backends.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from devtools.stack import Stack
from tests.integration.helpers import extra_edge, fake_requests, poll

pytestmark = pytest.mark.timeout(120)

_RESET = r"^(\d+ms|\d+s|\d+m\d+s|\d+h\d+m\d+s)$"


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _wait_until(ok: Any, *, timeout: float) -> None:
    """Poll the clock (``ok(now)``) until it holds; bounded by ``timeout``."""
    poll(lambda: True if ok(time.time()) else None, timeout=timeout, interval=0.02)


def _fresh_minute(*, latest: float = 50.0) -> None:
    """Make sure at least ``60 - latest`` seconds of the current minute remain."""
    _wait_until(lambda now: now % 60 < latest, timeout=15)


class Project:
    """A project made with the admin API, and keys in it."""

    def __init__(self, http: httpx.Client, stack: Stack, **fields: Any) -> None:
        self.http, self.stack = http, stack
        resp = http.post(
            "/admin/projects",
            json={"name": f"rl-{secrets.token_hex(4)}", **fields},
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        self.id: str = resp.json()["id"]

    def key(self, **fields: Any) -> dict[str, Any]:
        resp = self.http.post(
            f"/admin/projects/{self.id}/keys",
            json={"name": "k", "scopes": ["chat", "admin"], **fields},
            headers=_operator(self.stack),
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _chat(origin: str, key: str, text: str, **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{origin}/v1/chat/completions",
        json={
            "model": "mock-chat",
            "messages": [{"role": "user", "content": text}],
            **fields,
        },
        headers=_bearer(key),
        timeout=30,
    )


@dataclass(frozen=True)
class _Shot:
    sent: float
    done: float
    status: int
    retry_after: int | None
    remaining: str | None

    @property
    def window(self) -> int:
        """The minute the request was admitted or refused in (asserted unambiguous)."""
        first, last = math.floor(self.sent / 60), math.floor(self.done / 60)
        assert first == last, f"a request straddled a minute boundary: {self}"
        return first


def _burst(origins: list[str], key: str, count: int) -> list[_Shot]:
    """``count`` concurrent chat calls, alternating over ``origins`` (bounded pool)."""

    def one(i: int) -> _Shot:
        sent = time.time()
        resp = _chat(origins[i % len(origins)], key, f"burst {i} {secrets.token_hex(3)}")
        done = time.time()
        assert resp.status_code in (200, 429), resp.text
        if resp.status_code == 429:
            body = resp.json()["error"]
            assert body["type"] == "requests" and body["code"] == "rate_limit_exceeded", body
            assert "Please try again in" in body["message"]
        retry = resp.headers.get("retry-after")
        return _Shot(
            sent,
            done,
            resp.status_code,
            int(retry) if retry is not None else None,
            resp.headers.get("x-ratelimit-remaining-requests"),
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.timeout(240)
def test_two_edges_share_a_per_minute_limit_across_a_minute_boundary(
    http: httpx.Client, stack: Stack, base_url: str
) -> None:
    limit = 6
    project = Project(http, stack)
    # allowed_models refuses before the limiter counts: a free readiness probe per edge.
    key = project.key(rate_limits={"per_minute": limit}, allowed_models=["mock-chat"])["key"]
    with extra_edge(stack) as other:
        origins = [base_url, other]
        for origin in origins:
            poll(
                lambda o=origin: (
                    True
                    if httpx.post(
                        f"{o}/v1/chat/completions",
                        json={
                            "model": "mock-reasoning",
                            "messages": [{"role": "user", "content": "x"}],
                        },
                        headers=_bearer(key),
                        timeout=10,
                    ).status_code
                    == 403
                    else None
                ),
                timeout=10,
            )
        # A few seconds before a minute ends, burst on both edges.
        _wait_until(lambda now: 54.0 <= now % 60 < 55.5, timeout=70)
        before = _burst(origins, key, 3 * limit)
        boundary = (before[0].window + 1) * 60
        admitted = [s for s in before if s.status == 200]
        refused = [s for s in before if s.status == 429]
        assert {s.window for s in before} == {before[0].window}
        assert len(admitted) == limit, before  # exact over two edges
        assert sorted(int(s.remaining or -1) for s in admitted) == list(range(limit))
        for shot in refused:
            # True: the window ends within the stated wait (whole seconds, rounded up).
            assert shot.retry_after is not None, shot
            assert shot.done + shot.retry_after >= boundary, shot
            assert shot.retry_after <= math.ceil(boundary - shot.sent), shot
        # After the latest Retry-After, the window admits again: exactly `limit` more.
        ready_at = max(s.done + (s.retry_after or 0) for s in refused)
        _wait_until(lambda now: now >= ready_at, timeout=15)
        after = _burst(origins, key, 3 * limit)
        assert {s.window for s in after} == {before[0].window + 1}
        assert sum(s.status == 200 for s in after) == limit, after


def test_headers_and_429_with_the_official_sdk(
    http: httpx.Client, stack: Stack, base_url: str, fake_provider_url: str
) -> None:
    project = Project(http, stack)
    created = project.key(
        rate_limits={"per_minute": 3, "per_day": 1000, "tokens_per_minute": 50_000}
    )
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=created["key"], max_retries=0)
    _fresh_minute()
    remaining = []
    for i in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="mock-chat", messages=[{"role": "user", "content": f"hello {i}"}], max_tokens=20
        )
        assert raw.http_response.status_code == 200
        h = raw.headers
        assert h["x-ratelimit-limit-requests"] == "3"  # the tightest of per-minute and per-day
        assert h["x-ratelimit-limit-tokens"] == "50000"
        assert int(h["x-ratelimit-remaining-tokens"]) < 50_000
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
            assert re.match(_RESET, h[name]), h[name]
        remaining.append(int(h["x-ratelimit-remaining-requests"]))
        assert raw.parse().choices[0].message.content
    assert remaining == [2, 1, 0]

    marker = secrets.token_hex(6)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": marker}]
        )
    err = caught.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert isinstance(err.body, dict) and err.body["type"] == "requests"
    wait = int(err.response.headers["retry-after"])
    assert 1 <= wait <= 60 and f"Please try again in {wait}s" in err.body["message"]
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert fake_requests(fake_provider_url, marker) == []  # refused before the provider

    # A PATCH of the key's limits reaches the edge; null removes them (no headers then).
    resp = http.patch(
        f"/admin/projects/{project.id}/keys/{created['id']}",
        json={"rate_limits": None},
        headers=_operator(stack),
    )
    assert resp.status_code == 200 and resp.json()["rate_limits"] is None, resp.text
    unlimited = poll(
        lambda: r if (r := _chat(base_url, created["key"], "again")).status_code == 200 else None,
        timeout=10,
    )
    assert "x-ratelimit-limit-requests" not in unlimited.headers


def test_project_limit_is_shared_by_its_keys_and_streams_carry_headers(
    http: httpx.Client, stack: Stack, base_url: str
) -> None:
    project = Project(http, stack, rate_limits={"per_minute": 2})
    a, b = project.key()["key"], project.key()["key"]
    _fresh_minute()
    stream = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mock-chat", "stream": True, "messages": [{"role": "user", "content": "s"}]},
        headers=_bearer(a),
        timeout=30,
    )
    assert stream.status_code == 200 and stream.text.rstrip().endswith("data: [DONE]")
    assert stream.headers["x-ratelimit-remaining-requests"] == "1"
    assert _chat(base_url, b, "b").status_code == 200
    refused = _chat(base_url, a, "a")
    assert refused.status_code == 429 and "project" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_gateway_api_endpoint_limit_answers_429_in_its_shape(
    http: httpx.Client, stack: Stack, fake_provider_url: str
) -> None:
    project = Project(http, stack)
    key = project.key()["key"]
    resp = http.post(
        f"/admin/projects/{project.id}/endpoints",
        json={"slug": "limited", "model": "mock-chat", "rate_limits": {"per_minute": 2}},
        headers=_bearer(key),
    )
    assert resp.status_code == 201, resp.text
    _fresh_minute()
    url = f"/api/{project.id}/limited"
    for i in range(2):
        ok = http.post(url, json={"message": f"hi {i}"}, headers=_bearer(key))
        assert ok.status_code == 200 and ok.json()["ok"] is True, ok.text
        assert ok.headers["x-ratelimit-remaining-requests"] == str(1 - i)
    marker = secrets.token_hex(6)
    sent = time.time()
    refused = http.post(url, json={"message": marker}, headers=_bearer(key))
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["ok"] is False and body["code"] == "rate_limit_exceeded", body
    assert "endpoint" in body["error"]
    done = time.time()
    wait = int(refused.headers["retry-after"])
    # True: the seconds from the decision (between sent and done) to the minute's end.
    assert math.ceil(60 - done % 60) <= wait <= math.ceil(60 - sent % 60), (sent, done, wait)
    assert fake_requests(fake_provider_url, marker) == []
    # The dispatcher counts against the same endpoint limit.
    dispatched = http.post(
        f"/api/{project.id}/chat/completions",
        json={"endpoint": "limited", "message": "d"},
        headers=_bearer(key),
    )
    assert dispatched.status_code == 429 and dispatched.json()["ok"] is False


def test_allowed_models_refuse_other_models_before_the_provider(
    http: httpx.Client, stack: Stack, base_url: str, fake_provider_url: str
) -> None:
    project = Project(http, stack)
    # Saving checks the names against the catalog and the shape of the limits.
    bad = http.post(
        f"/admin/projects/{project.id}/keys",
        json={"name": "k", "scopes": ["chat"], "allowed_models": ["no-such-model"]},
        headers=_operator(stack),
    )
    assert bad.status_code == 400 and "allowed_models" in bad.json()["error"], bad.text
    bad = http.post(
        f"/admin/projects/{project.id}/keys",
        json={"name": "k", "scopes": ["chat"], "rate_limits": {"per_minute": 0}},
        headers=_operator(stack),
    )
    assert bad.status_code == 400 and "rate_limits" in bad.json()["error"], bad.text
    bad = http.patch(
        f"/admin/projects/{project.id}",
        json={"rate_limits": {"per_day": -1}},
        headers=_operator(stack),
    )
    assert bad.status_code == 400 and "rate_limits" in bad.json()["error"], bad.text

    created = project.key(allowed_models=["mock-chat"])
    key = created["key"]
    marker = secrets.token_hex(6)
    resp = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mock-reasoning", "messages": [{"role": "user", "content": marker}]},
        headers=_bearer(key),
        timeout=30,
    )
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["code"] == "model_not_allowed" and "mock-reasoning" in error["message"]
    assert error["param"] == "model"
    assert _chat(base_url, key, "allowed").status_code == 200
    # /v1/models shows only what the key may call.
    listed = httpx.get(f"{base_url}/v1/models", headers=_bearer(key), timeout=30)
    assert [m["id"] for m in listed.json()["data"]] == ["mock-chat"], listed.text
    hidden = httpx.get(f"{base_url}/v1/models/mock-reasoning", headers=_bearer(key), timeout=30)
    assert hidden.status_code == 404

    # The Gateway API: an endpoint on a model the key may not call is 403, ok-shaped.
    made = http.post(
        f"/admin/projects/{project.id}/endpoints",
        json={"slug": "reasoner", "model": "mock-reasoning"},
        headers=_bearer(key),
    )
    assert made.status_code == 201, made.text
    resp = http.post(f"/api/{project.id}/reasoner", json={"message": marker}, headers=_bearer(key))
    assert resp.status_code == 403, resp.text
    assert resp.json()["ok"] is False and resp.json()["code"] == "model_not_allowed"
    assert "mock-reasoning" in resp.json()["error"]
    assert fake_requests(fake_provider_url, marker) == []


def test_tokens_per_minute_reserve_the_worst_case_and_settle_to_usage(
    http: httpx.Client, stack: Stack, base_url: str, fake_provider_url: str
) -> None:
    budget = 5_000
    project = Project(http, stack)
    key = project.key(rate_limits={"tokens_per_minute": budget})["key"]

    # A worst case larger than the limit can never fit: 429 without Retry-After.
    marker = secrets.token_hex(6)
    too_big = _chat(base_url, key, marker)  # no max_tokens: mock-chat's 16384 reserved
    assert too_big.status_code == 429, too_big.text
    assert too_big.json()["error"]["type"] == "tokens"
    assert "Request too large" in too_big.json()["error"]["message"]
    assert "retry-after" not in too_big.headers
    assert too_big.headers["x-should-retry"] == "false"  # the SDKs then do not retry
    assert fake_requests(fake_provider_url, marker) == []

    _fresh_minute()
    first = _chat(base_url, key, "one two three " + secrets.token_hex(6), max_tokens=100)
    second = _chat(base_url, key, "one two three " + secrets.token_hex(6), max_tokens=100)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    r1 = int(first.headers["x-ratelimit-remaining-tokens"])
    r2 = int(second.headers["x-ratelimit-remaining-tokens"])
    used = first.json()["usage"]
    used_tokens = used["prompt_tokens"] + used["completion_tokens"]
    # Both bodies are the same size, so both reserved the same worst case w:
    # r1 = budget - w, r2 = budget - used(first) - w once the first was settled.
    worst = budget - r1
    assert worst > used_tokens
    assert r1 - r2 == used_tokens, (r1, r2, used)


def test_gateway_api_endpoint_tokens_reserved_after_prompt_apply_and_settled(
    http: httpx.Client, stack: Stack, fake_provider_url: str
) -> None:
    budget = 3_000
    project = Project(http, stack)
    key = project.key()["key"]
    resp = http.post(
        f"/admin/projects/{project.id}/endpoints",
        json={
            "slug": "tokens",
            "model": "mock-chat",
            "system_prompt": "Be brief.",
            "params": {"max_tokens": 50},
            "rate_limits": {"per_minute": 100, "tokens_per_minute": budget},
        },
        headers=_bearer(key),
    )
    assert resp.status_code == 201, resp.text
    _fresh_minute()
    url = f"/api/{project.id}/tokens"
    first = http.post(
        url, json={"message": "one two " + secrets.token_hex(6)}, headers=_bearer(key)
    )
    second = http.post(
        url, json={"message": "one two " + secrets.token_hex(6)}, headers=_bearer(key)
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    r1 = int(first.headers["x-ratelimit-remaining-tokens"])
    r2 = int(second.headers["x-ratelimit-remaining-tokens"])
    used = first.json()["usage"]["total_tokens"]
    assert 0 < used < budget - r1  # reserved the worst case, of the built prompt
    assert r1 - r2 == used  # the first was settled to its usage before the second
    assert second.headers["x-ratelimit-remaining-requests"] == "98"

    # A call whose built prompt cannot fit is refused on tokens after the request was
    # counted: the request is taken back, and nothing reached the provider.
    marker = secrets.token_hex(6)
    big = http.post(url, json={"message": marker + " x" * 1500}, headers=_bearer(key))
    assert big.status_code == 429, big.text
    assert big.json()["ok"] is False and big.json()["code"] == "rate_limit_exceeded"
    assert fake_requests(fake_provider_url, marker) == []
    after = http.post(url, json={"message": "one two three"}, headers=_bearer(key))
    assert after.status_code == 200, after.text
    assert after.headers["x-ratelimit-remaining-requests"] == "97"
