"""Failover through the real stack, with the fake provider's failure controls.

Each ``fo-*`` model of ``tests/integration/catalog.yaml`` has a faulty
``primary`` and a healthy ``fallback`` (the plain fake). Every request carries
a fresh marker in its user message, so the fake's request log tells exactly
which deployment each one reached. The ``fo-breaker*`` primaries are switched
broken and healed at run time (``PUT``/``DELETE /_fake/switches/<name>``).

Runs on the SQLite stack only: failover lives in the router, which touches no
database, so the PostgreSQL stack would add run time and no coverage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack
from tests.integration.helpers import poll, sse_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

MODES = [pytest.param(False, id="unary"), pytest.param(True, id="stream")]


class Gateway:
    """The stack under test, seen by a client (edge) and an operator (fake log, metrics)."""

    def __init__(self, stack: Stack, client: httpx.Client) -> None:
        self.stack = stack
        self.client = client

    def chat(self, model: str, marker: str, *, stream: bool) -> httpx.Response:
        """One chat call; a stream's body is read to its end (or its break)."""
        body = {"model": model, "messages": [{"role": "user", "content": f"hello {marker}"}]}
        if stream:
            body["stream"] = True
        return self.client.post("/v1/chat/completions", json=body)

    def received(self, marker: str) -> list[str]:
        """Paths of the requests carrying ``marker`` that reached the fake provider."""
        log = httpx.get(f"{self.stack.fake_provider_url}/_fake/requests", timeout=5).json()
        return [r["path"] for r in log["requests"] if marker in orjson.dumps(r["body"]).decode()]

    def switch(self, name: str, spec: str | None) -> None:
        """Break a switched deployment (``spec``) or heal it (``None``)."""
        url = f"{self.stack.fake_provider_url}/_fake/switches/{name}"
        reply = httpx.delete(url) if spec is None else httpx.put(url, json={"spec": spec})
        reply.raise_for_status()

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the router's ``/metrics``, or None when absent."""
        port = self.stack.config.ports.router_metrics
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None


@pytest.fixture(scope="module")
def gateway(sqlite_stack: Stack) -> Iterator[Gateway]:
    key = sqlite_stack.config.api_key
    with httpx.Client(
        base_url=sqlite_stack.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20
    ) as client:
        yield Gateway(sqlite_stack, client)


def _marker() -> str:
    return uuid.uuid4().hex[:12]


def _route(reply: httpx.Response) -> tuple[str, str, str]:
    headers = reply.headers
    return (
        headers["x-switchyard-provider"],
        headers["x-switchyard-deployment"],
        headers["x-switchyard-attempts"],
    )


def _served(reply: httpx.Response, *, stream: bool) -> None:
    """The reply is a complete answer: a chat.completion, or chunks ending with [DONE]."""
    assert reply.status_code == 200, reply.text
    if stream:
        assert sse_data(reply.text.splitlines())[-1] == "[DONE]"
    else:
        assert reply.json()["object"] == "chat.completion"


@pytest.mark.parametrize("stream", MODES)
def test_a_500_fails_over_to_the_fallback(gateway: Gateway, stream: bool) -> None:
    marker = _marker()
    reply = gateway.chat("fo-500", marker, stream=stream)
    _served(reply, stream=stream)
    assert _route(reply) == ("fake", "fallback", "2")
    assert gateway.received(marker) == [
        "/fault/status=500/v1/chat/completions",
        "/v1/chat/completions",
    ]


@pytest.mark.parametrize("stream", MODES)
def test_a_primary_slower_than_its_timeout_is_passed_over_in_time(
    gateway: Gateway, stream: bool
) -> None:
    marker = _marker()
    started = time.monotonic()
    reply = gateway.chat("fo-slow", marker, stream=stream)
    elapsed = time.monotonic() - started
    _served(reply, stream=stream)
    assert _route(reply) == ("fake", "fallback", "2")
    # The primary's read timeout is 0.5 s and it would answer after 5 s.
    assert elapsed < 2.5, f"took {elapsed:.2f} s"


@pytest.mark.parametrize("stream", MODES)
def test_a_client_error_is_not_retried(gateway: Gateway, stream: bool) -> None:
    marker = _marker()
    reply = gateway.chat("fo-400", marker, stream=stream)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "fake provider: injected status 400"
    assert gateway.received(marker) == ["/fault/status=400/v1/chat/completions"]


@pytest.mark.parametrize("stream", MODES)
def test_all_down_is_a_502_listing_every_attempt(gateway: Gateway, stream: bool) -> None:
    marker = _marker()
    model = "fo-all-down-stream" if stream else "fo-all-down"
    reply = gateway.chat(model, marker, stream=stream)
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["code"] == "all_providers_failed"
    suffix = "-stream" if stream else ""
    # Two passes over both deployments (resilience.retry.passes defaults to 2).
    assert [(a["provider"], a["deployment"], a["status"]) for a in error["attempts"]] == [
        ("fo-503", f"down-a{suffix}", 502),
        ("fo-reset", f"down-b{suffix}", 502),
    ] * 2
    assert len(gateway.received(marker)) == 4


@pytest.mark.parametrize("stream", MODES)
def test_breaker_opens_then_closes_after_recovery(gateway: Gateway, stream: bool) -> None:
    model, switch = (
        ("fo-breaker-stream", "fo-breaker-stream") if stream else ("fo-breaker", "fo-breaker")
    )
    provider = "fo-switch-stream" if stream else "fo-switch"
    state = {"provider": provider, "deployment": "primary"}
    marker = _marker()
    primary = f"/fault/switch={switch}/v1/chat/completions"

    def primary_hits() -> int:
        return gateway.received(marker).count(primary)

    gateway.switch(switch, "status=500")
    try:
        for _ in range(3):  # consecutive_failures: 3 in the test catalog
            reply = gateway.chat(model, marker, stream=stream)
            _served(reply, stream=stream)
            assert _route(reply) == ("fake", "fallback", "2")
        assert gateway.metric("switchyard_router_breaker_state", **state) == 2  # open
        for _ in range(3):  # open: the primary gets no traffic at all
            reply = gateway.chat(model, marker, stream=stream)
            assert _route(reply) == ("fake", "fallback", "1")
        assert primary_hits() == 3
    finally:
        gateway.switch(switch, None)

    # After the 1 s cool-down one probe goes to the healed primary and closes the breaker.
    def probed() -> httpx.Response | None:
        reply = gateway.chat(model, marker, stream=stream)
        return reply if _route(reply)[1] == "primary" else None

    _served(poll(probed, timeout=10, interval=0.1), stream=stream)
    assert primary_hits() == 4
    assert gateway.metric("switchyard_router_breaker_state", **state) == 0
    reply = gateway.chat(model, marker, stream=stream)
    assert _route(reply) == (provider, "primary", "1")


def _stream_events(reply: httpx.Response) -> list[Any]:
    return [e if e == "[DONE]" else orjson.loads(e) for e in sse_data(reply.text.splitlines())]


def test_a_stream_broken_after_its_first_chunks_ends_with_an_error_event(
    gateway: Gateway,
) -> None:
    marker = _marker()
    started = time.monotonic()
    reply = gateway.chat("fo-break", marker, stream=True)
    assert time.monotonic() - started < 5
    assert reply.status_code == 200
    events = _stream_events(reply)
    assert "[DONE]" not in events
    *chunks, last = events
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3  # break_after=3
    assert last["error"]["code"] == "provider_unavailable"
    assert _route(reply) == ("fo-break", "primary", "1")
    # Committed after the first chunk: no failover to the fallback.
    assert gateway.received(marker) == ["/fault/break_after=3/v1/chat/completions"]


def test_a_stream_stalled_after_its_first_chunk_ends_within_the_read_timeout(
    gateway: Gateway,
) -> None:
    started = time.monotonic()
    reply = gateway.chat("fo-stall", _marker(), stream=True)
    elapsed = time.monotonic() - started
    events = _stream_events(reply)
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "provider_timeout"
    assert elapsed < 2.5, f"took {elapsed:.2f} s"  # read timeout 0.5 s; the fake stalls 5 s


def test_catalog_hot_reload_through_the_stack(gateway: Gateway) -> None:
    path = gateway.stack.catalog_path
    original = path.read_text()
    alias = f"hot-{_marker()}"
    document = yaml.safe_load(original)
    document["models"]["mock-chat"].setdefault("aliases", []).append(alias)

    def reloads(result: str) -> float:
        return gateway.metric("switchyard_router_catalog_reloads_total", result=result) or 0.0

    def served() -> httpx.Response | None:
        reply = gateway.chat(alias, _marker(), stream=False)
        return reply if reply.status_code == 200 else None

    assert gateway.chat(alias, _marker(), stream=False).status_code == 404
    errors_before = reloads("error")
    try:
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        assert poll(served, timeout=10, interval=0.2).json()["model"] == "mock-chat"

        path.write_text("version: 1\nproviders: [this is not a catalog\n")
        poll(lambda: True if reloads("error") > errors_before else None, timeout=10, interval=0.2)
        assert served() is not None  # the previous catalog is still in force
    finally:
        ok_before = reloads("ok")
        path.write_text(original)
        poll(lambda: True if reloads("ok") > ok_before else None, timeout=10, interval=0.2)
    assert gateway.chat(alias, _marker(), stream=False).status_code == 404
