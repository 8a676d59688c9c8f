"""Budgets and credits that cannot be overrun, over real processes and two edge replicas.

Each test makes its own project and key through the admin API and sets its
budget or credits through billing's own subjects (``billing.budget.set.v1``,
``billing.credits.topup.v1``). Worst cases are computed here from the
documented bound (``edge.pricebook``): every byte of the request body a prompt
token, plus ``max_tokens`` (else the model's ``max_output_tokens``) completion
tokens, at the catalog's prices for ``budget-slow`` / ``mock-chat``.

``budget-slow`` answers 4 s late, so every request of a burst is decided
while the admitted ones still hold their reservations: the budget then admits
exactly as many as it covers, however the burst is split across the edges.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from decimal import Decimal

import httpx
import nats
import orjson
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common import billing_api as wire
from gateway_common import subjects
from gateway_common.db import sync_url
from tests.integration.helpers import extra_edge, poll

pytestmark = pytest.mark.timeout(90)

#: Catalog prices of budget-slow and mock-chat, per token.
IN, OUT = Decimal("0.00000015"), Decimal("0.0000006")
MAX_OUTPUT_TOKENS = 16384


def chat_body(model: str, *, max_tokens: int | None) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "how much may I spend"}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return orjson.dumps(body)


def worst_case(body: bytes, completion_tokens: int) -> Decimal:
    return IN * len(body) + OUT * completion_tokens


@pytest.fixture(scope="module")
def second_edge(stack: Stack) -> Iterator[str]:
    """A second edge replica on the stack (once per backend)."""
    with extra_edge(stack) as origin:
        yield origin


async def new_tenant(base_url: str, stack: Stack) -> tuple[str, dict[str, str]]:
    """A fresh project with one chat key: its id and the key's headers."""
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as admin:
        name = f"budget-{secrets.token_hex(4)}"
        resp = await admin.post("/admin/projects", json={"name": name}, headers=operator)
        assert resp.status_code == 201, resp.text
        project_id = resp.json()["id"]
        resp = await admin.post(
            f"/admin/projects/{project_id}/keys",
            json={"name": name, "scopes": ["chat"]},
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
    return project_id, {"authorization": f"Bearer {resp.json()['key']}"}


async def billing(stack: Stack, subject: str, message: wire.BudgetSet | wire.CreditsTopUp) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        reply = orjson.loads((await nc.request(subject, message.to_bytes(), timeout=10)).data)
    finally:
        await nc.close()
    assert reply["status"] == "ok", reply


async def burst(origins: list[str], headers: dict[str, str], body: bytes, n: int) -> list[int]:
    """``n`` concurrent calls, dealt round-robin over ``origins``; their status codes."""
    clients = [
        httpx.AsyncClient(base_url=origin, timeout=60, limits=httpx.Limits(max_connections=n))
        for origin in origins
    ]
    try:
        calls = [
            clients[i % len(clients)].post("/v1/chat/completions", content=body, headers=headers)
            for i in range(n)
        ]
        responses = await asyncio.gather(*calls)
    finally:
        for client in clients:
            await client.aclose()
    for resp in responses:
        if resp.status_code == 429:
            error = resp.json()["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    return [resp.status_code for resp in responses]


def billed(stack: Stack, project_id: str, entries: int) -> Decimal:
    """The project's ledger total, once it holds ``entries`` entries (polled)."""
    engine = sa.create_engine(sync_url(stack.database_url("billing")))

    def total() -> Decimal | None:
        with engine.connect() as conn:
            count, amount = conn.execute(
                sa.text(
                    "SELECT count(*), coalesce(sum(total_amount), 0) FROM ledger_entries "
                    "WHERE project_id = :p"
                ),
                {"p": project_id},
            ).one()
        return Decimal(str(amount)) if count == entries else None

    try:
        return poll(total, timeout=30)
    finally:
        engine.dispose()


async def test_200_concurrent_requests_on_two_edges_never_overrun_a_budget_of_20(
    stack: Stack, base_url: str, second_edge: str
) -> None:
    project_id, headers = await new_tenant(base_url, stack)
    body = chat_body("budget-slow", max_tokens=16)
    limit = worst_case(body, 16) * 20
    await billing(
        stack, subjects.BILLING_BUDGET_SET, wire.BudgetSet(project_id=project_id, limit=limit)
    )
    statuses = await burst([base_url, second_edge], headers, body, 200)
    admitted = statuses.count(200)
    assert 0 < admitted <= 20
    assert statuses.count(429) == 200 - admitted
    assert billed(stack, project_id, admitted) <= limit


async def test_without_max_tokens_the_models_maximum_output_is_reserved(
    stack: Stack, base_url: str, second_edge: str
) -> None:
    """The stated bound: a request without max tokens reserves the model's max_output_tokens
    (16384 for budget-slow), so a budget admits limit // that many, whatever they say."""
    project_id, headers = await new_tenant(base_url, stack)
    body = chat_body("budget-slow", max_tokens=None)
    limit = worst_case(body, MAX_OUTPUT_TOKENS) * 3
    await billing(
        stack, subjects.BILLING_BUDGET_SET, wire.BudgetSet(project_id=project_id, limit=limit)
    )
    statuses = await burst([base_url, second_edge], headers, body, 12)
    admitted = statuses.count(200)
    assert 0 < admitted <= 3
    assert statuses.count(429) == 12 - admitted
    assert billed(stack, project_id, admitted) <= limit


async def test_exhausted_credits_are_refused_until_a_top_up(stack: Stack, base_url: str) -> None:
    project_id, headers = await new_tenant(base_url, stack)
    body = chat_body("mock-chat", max_tokens=16)
    half = worst_case(body, 16) / 2
    await billing(
        stack,
        subjects.BILLING_CREDITS_TOPUP,
        wire.CreditsTopUp(project_id=project_id, topup_id="first", amount=half),
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        resp = await client.post("/v1/chat/completions", content=body, headers=headers)
        assert resp.status_code == 403
        assert resp.json()["error"]["message"] == "Credits exhausted."
        await billing(
            stack,
            subjects.BILLING_CREDITS_TOPUP,
            wire.CreditsTopUp(project_id=project_id, topup_id="second", amount=half * 20),
        )
        deadline = asyncio.get_running_loop().time() + 10
        while (status := await client_status(client, body, headers)) == 403:
            assert asyncio.get_running_loop().time() < deadline, "top-up never took effect"
            await asyncio.sleep(0.1)  # the edge reuses billing's refusal for up to 1 s
        assert status == 200


async def client_status(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> int:
    resp = await client.post("/v1/chat/completions", content=body, headers=headers)
    return resp.status_code
