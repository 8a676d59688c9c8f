"""The gateway's own refusals on ``/v1/messages``, as the official ``anthropic`` SDK (sync and
async) raises them, and the per-project ``generation_context`` switch of the surface.

Each refusal is the gateway's, not a provider's: a per-minute limit (429
``rate_limit_error`` with ``retry-after`` -> ``RateLimitError``), a spent budget (400
``invalid_request_error``, what Anthropic answers at a spend limit -> ``BadRequestError``),
exhausted credits (402 ``billing_error`` -> ``PaymentRequiredError``), a key without the chat
scope (403 ``permission_error`` -> ``PermissionDeniedError``), a wrong key (401 ->
``AuthenticationError``) and an unknown model (404 -> ``NotFoundError``). The first three
also through the official Node SDK (``node/anthropic_errors.mjs``), when Node is installed,
and streamed refusals, before the first byte and mid-stream (``node/anthropic_stream_errors.mjs``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import nats
import orjson
import pytest

from devtools.stack import Stack
from gateway_common import billing_api as wire
from gateway_common import subjects

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_ASK: list[Any] = [{"role": "user", "content": "hi"}]


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


async def _project(base_url: str, stack: Stack, **fields: Any) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as admin:
        resp = await admin.post(
            "/admin/projects",
            json={"name": f"msg-{secrets.token_hex(4)}", **fields},
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])


async def _key(base_url: str, stack: Stack, project_id: str, **fields: Any) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as admin:
        resp = await admin.post(
            f"/admin/projects/{project_id}/keys",
            json={"name": "k", "scopes": ["chat"], **fields},
            headers=_operator(stack),
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])


async def _billing(stack: Stack, subject: str, message: wire.BudgetSet | wire.CreditsTopUp) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        reply = orjson.loads((await nc.request(subject, message.to_bytes(), timeout=10)).data)
    finally:
        await nc.close()
    assert reply["status"] == "ok", reply


Clients = Callable[[str], tuple[anthropic.Anthropic, anthropic.AsyncAnthropic]]


@pytest.fixture
async def clients(base_url: str) -> AsyncIterator[Clients]:
    """Sync and async SDK clients for a key, without retries (closed at the end)."""
    made: list[tuple[anthropic.Anthropic, anthropic.AsyncAnthropic]] = []

    def build(key: str) -> tuple[anthropic.Anthropic, anthropic.AsyncAnthropic]:
        pair = (
            anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30),
            anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30),
        )
        made.append(pair)
        return pair

    try:
        yield build
    finally:
        for sync, async_ in made:
            sync.close()
            await async_.close()


async def _both_raise(
    pair: tuple[anthropic.Anthropic, anthropic.AsyncAnthropic],
    error: type[anthropic.APIStatusError],
    status: int,
    kind: str,
    model: str = "mock-chat",
) -> list[anthropic.APIStatusError]:
    """Call ``create`` on the sync then the async client; both raise ``error`` exactly."""
    sync, async_ = pair
    raised: list[anthropic.APIStatusError] = []
    with pytest.raises(error) as one:
        sync.messages.create(model=model, max_tokens=5, messages=_ASK)
    raised.append(one.value)
    with pytest.raises(error) as two:
        await async_.messages.create(model=model, max_tokens=5, messages=_ASK)
    raised.append(two.value)
    for exc in raised:
        assert type(exc) is error, type(exc)
        assert exc.status_code == status
        assert exc.body["error"]["type"] == kind  # type: ignore[index]
        assert exc.body["type"] == "error"  # type: ignore[index]
    return raised


async def test_a_rate_limit_is_rate_limit_error_with_retry_after(
    base_url: str, stack: Stack, clients: Clients
) -> None:
    project = await _project(base_url, stack)
    pair = clients(await _key(base_url, stack, project, rate_limits={"per_minute": 1}))
    pair[0].messages.create(model="mock-chat", max_tokens=5, messages=_ASK)
    for exc in await _both_raise(pair, anthropic.RateLimitError, 429, "rate_limit_error"):
        assert int(exc.response.headers["retry-after"]) >= 1


async def test_a_spent_budget_is_invalid_request_error_as_at_anthropics_spend_limit(
    base_url: str, stack: Stack, clients: Clients
) -> None:
    project = await _project(base_url, stack)
    pair = clients(await _key(base_url, stack, project))
    limit = Decimal("0.0000001")  # below any worst case of a 5-token call
    await _billing(
        stack, subjects.BILLING_BUDGET_SET, wire.BudgetSet(project_id=project, limit=limit)
    )
    await _both_raise(pair, anthropic.BadRequestError, 400, "invalid_request_error")


async def test_exhausted_credits_are_402_billing_error(
    base_url: str, stack: Stack, clients: Clients
) -> None:
    project = await _project(base_url, stack)
    pair = clients(await _key(base_url, stack, project))
    top_up = wire.CreditsTopUp(project_id=project, topup_id="t", amount=Decimal("0.0000001"))
    await _billing(stack, subjects.BILLING_CREDITS_TOPUP, top_up)
    await _both_raise(pair, anthropic.PaymentRequiredError, 402, "billing_error")


async def test_access_auth_and_model_refusals(
    base_url: str, stack: Stack, clients: Clients
) -> None:
    project = await _project(base_url, stack)
    no_chat = clients(await _key(base_url, stack, project, scopes=["embeddings"]))
    await _both_raise(no_chat, anthropic.PermissionDeniedError, 403, "permission_error")
    wrong = clients("sk-sy-" + secrets.token_hex(16))
    await _both_raise(wrong, anthropic.AuthenticationError, 401, "authentication_error")
    fine = clients(await _key(base_url, stack, project))
    await _both_raise(fine, anthropic.NotFoundError, 404, "not_found_error", model="no-such")


async def test_generation_context_only_when_the_project_turns_it_on_for_messages(
    base_url: str, stack: Stack, clients: Clients
) -> None:
    default = await _project(base_url, stack)
    sync, _ = clients(await _key(base_url, stack, default))
    message = sync.messages.create(model="mock-chat", max_tokens=5, messages=_ASK)
    assert "generation_context" not in (message.model_extra or {})
    on = await _project(base_url, stack, settings={"messages_generation_context": True})
    sync, async_ = clients(await _key(base_url, stack, on))
    message = sync.messages.create(model="mock-chat", max_tokens=5, messages=_ASK)
    context = (message.model_extra or {})["generation_context"]
    assert context["generated_usage"], context
    async with async_.messages.stream(model="mock-chat", max_tokens=5, messages=_ASK) as stream:
        deltas = [e async for e in stream if e.type == "message_delta"]
    assert (deltas[0].model_extra or {})["generation_context"]["generated_usage"]


_NODE_DIR = Path(__file__).with_name("node")


async def _node(script: str, **env: str) -> Any:
    """Run ``node/<script>`` with ``env`` added; its stdout, parsed as JSON."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK test needs Node.js >= 20")
    if not (_NODE_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        pytest.skip("the Anthropic Node SDK is not installed: run `make node-deps` (npm ci)")
    proc = await asyncio.create_subprocess_exec(
        node, script, cwd=_NODE_DIR, env={**os.environ, **env}, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return orjson.loads(out)


async def _spend_the_one_call(base_url: str, key: str) -> None:
    """Use up a key limited to one request per window (a 529 while billing warms up is
    retried)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for _ in range(20):
            first = await http.post(
                "/v1/messages",
                json={"model": "mock-chat", "max_tokens": 5, "messages": _ASK},
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
            )
            if first.status_code != 529:
                break
            await asyncio.sleep(0.5)
    assert first.status_code in (200, 429), first.text


async def _spent_budget_key(base_url: str, stack: Stack) -> str:
    """A key of a project whose budget is below any call's worst case."""
    spent = await _project(base_url, stack)
    key = await _key(base_url, stack, spent)
    limit = Decimal("0.0000001")
    await _billing(
        stack, subjects.BILLING_BUDGET_SET, wire.BudgetSet(project_id=spent, limit=limit)
    )
    return key


async def test_the_node_sdk_raises_the_same_refusals(base_url: str, stack: Stack) -> None:
    """``@anthropic-ai/sdk`` (``node/anthropic_errors.mjs``): 429, 400 and 402 as above."""
    limited = await _project(base_url, stack)
    rate = await _key(base_url, stack, limited, rate_limits={"per_minute": 1})
    await _spend_the_one_call(base_url, rate)
    budget = await _spent_budget_key(base_url, stack)
    broke = await _project(base_url, stack)
    credits = await _key(base_url, stack, broke)
    top_up = wire.CreditsTopUp(project_id=broke, topup_id="t", amount=Decimal("0.0000001"))
    await _billing(stack, subjects.BILLING_CREDITS_TOPUP, top_up)

    keys = {"rate": rate, "budget": budget, "credits": credits}
    result = await _node(
        "anthropic_errors.mjs",
        SWITCHYARD_ORIGIN=base_url,
        SWITCHYARD_KEYS=orjson.dumps(keys).decode(),
    )
    rate_error = result["rate"]
    assert int(rate_error.pop("retryAfter")) >= 1
    assert rate_error == {"status": 429, "name": "RateLimitError", "type": "rate_limit_error"}
    assert result["budget"] == {
        "status": 400,
        "name": "BadRequestError",
        "type": "invalid_request_error",
        "retryAfter": None,
    }
    assert result["credits"] == {
        "status": 402,
        "name": "PaymentRequiredError",
        "type": "billing_error",
        "retryAfter": None,
    }


async def test_the_node_sdk_raises_streaming_refusals(base_url: str, stack: Stack) -> None:
    """``node/anthropic_stream_errors.mjs``: streamed calls, by ``create({stream: true})``
    and by the ``messages.stream`` helper. Refused before the first byte (rate limit,
    budget, unknown model): the SDK's typed error with Anthropic's status and body. Failed
    after the 200 (the provider's ``error`` event, or an OpenAI-kind provider's dropped
    connection, translated): the ``error`` event, which the SDK throws as a plain
    ``APIError`` without a status, after the events that had arrived."""
    limited = await _project(base_url, stack)
    # per_day, not per_minute: a clock-aligned minute could end between the calls.
    rate = await _key(base_url, stack, limited, rate_limits={"per_day": 1})
    await _spend_the_one_call(base_url, rate)
    fine = await _key(base_url, stack, await _project(base_url, stack))
    marker = secrets.token_hex(4)
    cases = {
        "rate": {"apiKey": rate, "model": "mock-chat", "prompt": "hi"},
        "budget": {"apiKey": await _spent_budget_key(base_url, stack), "model": "mock-chat"},
        "model": {"apiKey": fine, "model": "no-such-model"},
        "provider": {"apiKey": fine, "model": "mock-claude", "prompt": "fail [stream-error]"},
        "dropped": {"apiKey": fine, "model": "fo-break", "prompt": "a break mid-stream"},
    }
    for case in cases.values():
        case.setdefault("prompt", "hi")
        case["prompt"] += f" one two three four {marker}"
    result = await _node(
        "anthropic_stream_errors.mjs",
        SWITCHYARD_ORIGIN=base_url,
        SWITCHYARD_CASES=orjson.dumps(cases).decode(),
    )
    refused = {
        "rate": (429, "RateLimitError", "rate_limit_error"),
        "budget": (400, "BadRequestError", "invalid_request_error"),
        "model": (404, "NotFoundError", "not_found_error"),
    }
    for name, (status, error, kind) in refused.items():
        for way in ("create", "helper"):
            got = result[name][way]
            assert got is not None, (name, way)
            retry_after = got.pop("retryAfter")
            assert (retry_after is not None) == (name == "rate"), (name, way, retry_after)
            assert got == {
                "status": status,
                "name": error,
                "bodyType": "error",
                "type": kind,
                "hasMessage": True,
                "events": [],  # nothing was streamed before the refusal
                "text": None if way == "create" else "",
            }, (name, way)
    mid_stream = {"provider": "overloaded_error", "dropped": "api_error"}
    for name, kind in mid_stream.items():
        for way in ("create", "helper"):
            got = result[name][way]
            assert got is not None, (name, way)
            assert (got["status"], got["name"], got["retryAfter"]) == (None, "APIError", None)
            assert (got["bodyType"], got["type"], got["hasMessage"]) == ("error", kind, True)
            assert got["events"][0] == "message_start" and "message_stop" not in got["events"]
            assert "content_block_delta" in got["events"], (name, way, got["events"])
        assert result[name]["helper"]["text"], name  # the text before the error arrived
