"""A budget or credits change binds both edges at once (billing.budgets.changed.v1).

Each test warms both edges on a fresh project and key (so each has cached an
"unlimited" answer, a lease or a refusal), changes the limit through the admin
API, and fires right after the call returns, polling nothing. Before the
announcement the edges kept "unlimited" and leases for the lease TTL (30 s) and
refusals for 1 s, so every burst here would have been admitted in full.

Bursts use ``budget-slow`` (answers 4 s late): the requests of a burst decided
while the admitted ones still hold their reservations (on an idle machine, all of
them; ``Burst.admitted_while_all_held``) are admitted at most ``ADMITS`` times
for a budget worth that many worst cases, however the burst is split; the
ledger never exceeds the limit, however slow the machine. Worst cases are
computed from the documented bound (``edge.pricebook``): every body byte a
prompt token plus ``max_tokens`` completion tokens.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import orjson
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.db import sync_url
from tests.integration.helpers import Burst, extra_edge, poll

pytestmark = pytest.mark.timeout(120)

#: Catalog prices of budget-slow and mock-chat, per token, and their maximum output.
IN, OUT = Decimal("0.00000015"), Decimal("0.0000006")
MAX_OUTPUT_TOKENS = 16384
#: How many worst cases the changed budgets are worth, and the burst that tries them.
ADMITS, BURST = 10, 60
#: How long these tests' edges reuse billing's refusal without an announcement
#: (GATEWAY_BUDGET_REFUSAL_TTL_S, 1 s by default): long, so a slow machine cannot pass a test
#: by letting a refusal expire, nor fail one by being slow.
REFUSAL_TTL_S = 60.0
QUESTION = "is my budget still the same"


def chat_body(model: str, *, max_tokens: int | None) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return orjson.dumps(body)


SLOW = chat_body("budget-slow", max_tokens=16)
FAST = chat_body("mock-chat", max_tokens=16)


def worst_case(body: bytes, completion_tokens: int) -> Decimal:
    return IN * len(body) + OUT * completion_tokens


W = worst_case(SLOW, 16)


class Tenant:
    """A fresh project with one chat key, and admin calls on it through one edge."""

    def __init__(self, base_url: str, stack: Stack) -> None:
        self.base_url = base_url
        self.stack = stack
        self.operator = {"authorization": f"Bearer {stack.config.admin_token}"}
        self.project_id = ""
        self.key_id = ""
        self.headers: dict[str, str] = {}

    async def create(self) -> Tenant:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as admin:
            name = f"changes-{secrets.token_hex(4)}"
            resp = await admin.post("/admin/projects", json={"name": name}, headers=self.operator)
            assert resp.status_code == 201, resp.text
            self.project_id = resp.json()["id"]
            resp = await admin.post(
                f"/admin/projects/{self.project_id}/keys",
                json={"name": name, "scopes": ["chat"]},
                headers=self.operator,
            )
            assert resp.status_code == 201, resp.text
        self.key_id = resp.json()["id"]
        self.headers = {"authorization": f"Bearer {resp.json()['key']}"}
        return self

    async def put_budget(self, limit: Decimal, *, key: bool = False) -> None:
        path = f"/admin/projects/{self.project_id}"
        path += f"/keys/{self.key_id}/budget" if key else "/budget"
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as admin:
            resp = await admin.put(path, json={"limit": str(limit)}, headers=self.operator)
        assert resp.status_code == 200, resp.text

    async def top_up(self, amount: Decimal) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as admin:
            resp = await admin.post(
                f"/admin/projects/{self.project_id}/credits/topups",
                json={"topup_id": secrets.token_hex(8), "amount": str(amount)},
                headers=self.operator,
            )
        assert resp.status_code == 200, resp.text

    def billed(self, entries: int) -> Decimal:
        """The project's ledger total once it holds ``entries`` entries (polled)."""
        engine = sa.create_engine(sync_url(self.stack.database_url("billing")))

        def total() -> Decimal | None:
            with engine.connect() as conn:
                amounts = conn.execute(
                    sa.text("SELECT total_amount FROM ledger_entries WHERE project_id = :p"),
                    {"p": self.project_id},
                ).scalars()
                # Summed exactly here (SQLite's sum() of its text amounts goes through floats).
                found = [Decimal(str(amount)) for amount in amounts]
            return sum(found, Decimal(0)) if len(found) == entries else None

        try:
            return poll(total, timeout=30)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def edges(stack: Stack) -> Iterator[list[str]]:
    """Two edge replicas on the stack's NATS and databases (once per backend) that reuse a
    refusal for ``REFUSAL_TTL_S``: only billing's announcement can make them admit sooner."""
    ttl = {"GATEWAY_BUDGET_REFUSAL_TTL_S": str(REFUSAL_TTL_S)}
    with extra_edge(stack, **ttl) as first, extra_edge(stack, **ttl) as second:
        yield [first, second]


async def send(origin: str, tenant: Tenant, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=origin, timeout=60) as client:
        return await client.post("/v1/chat/completions", content=body, headers=tenant.headers)


async def warm(origins: list[str], tenant: Tenant, times: int = 2) -> int:
    """``times`` fast requests on each edge, all admitted; how many were sent."""
    for origin in origins:
        for _ in range(times):
            resp = await send(origin, tenant, FAST)
            assert resp.status_code == 200, resp.text
    return len(origins) * times


async def burst(stack: Stack, origins: list[str], tenant: Tenant) -> tuple[int, list[int]]:
    """``BURST`` concurrent slow calls dealt over ``origins``: how many were admitted while
    every admitted one held its worst case (``Burst.admitted_while_all_held``), and every
    status code."""
    clients = [
        httpx.AsyncClient(base_url=o, timeout=60, limits=httpx.Limits(max_connections=BURST))
        for o in origins
    ]
    try:
        done = await Burst.run(
            (
                clients[i % len(clients)].post(
                    "/v1/chat/completions", content=SLOW, headers=tenant.headers
                )
                for i in range(BURST)
            ),
            timeout_s=60,
        )
    finally:
        for client in clients:
            await client.aclose()
    refusals = {429: "insufficient_quota", 403: "credits_exhausted"}
    for resp in done.answers:
        assert resp.status_code in (200, *refusals), resp.text
        if resp.status_code in refusals:
            assert resp.json()["error"]["code"] == refusals[resp.status_code]
    return done.admitted_while_all_held(stack.fake_provider_url, QUESTION), done.statuses


@pytest.mark.parametrize("scope", ["project", "key"])
async def test_a_budget_set_on_a_warm_unlimited_account_binds_both_edges_at_once(
    stack: Stack, base_url: str, edges: list[str], scope: str
) -> None:
    tenant = await Tenant(base_url, stack).create()
    warmed = await warm(edges, tenant)
    limit = tenant.billed(warmed) + W * ADMITS
    await tenant.put_budget(limit, key=scope == "key")
    held_together, statuses = await burst(stack, edges, tenant)
    admitted = statuses.count(200)
    assert admitted > 0 and held_together <= ADMITS, statuses
    assert tenant.billed(warmed + admitted) <= limit


async def test_a_lowered_budget_stops_the_leases_both_edges_hold(
    stack: Stack, base_url: str, edges: list[str]
) -> None:
    tenant = await Tenant(base_url, stack).create()
    await tenant.put_budget(W * 1000)
    warmed = await warm(edges, tenant)  # each edge now holds a lease of ~10 worst cases
    limit = tenant.billed(warmed) + W * ADMITS
    await tenant.put_budget(limit)
    held_together, statuses = await burst(stack, edges, tenant)
    admitted = statuses.count(200)
    assert held_together <= ADMITS, statuses  # the two leases alone would have admitted ~20
    assert tenant.billed(warmed + admitted) <= limit


async def test_a_raised_budget_admits_at_once_and_a_refusal_says_what_would_fit(
    stack: Stack, base_url: str, edges: list[str]
) -> None:
    tenant = await Tenant(base_url, stack).create()
    unbounded = chat_body("mock-chat", max_tokens=None)
    limit = IN * len(unbounded) + OUT * 100  # fits max_tokens 100, not the model's 16,384
    await tenant.put_budget(limit)
    for origin in edges:
        resp = await send(origin, tenant, unbounded)
        assert resp.status_code == 429, resp.text
        message = resp.json()["error"]["message"]
        worst = worst_case(unbounded, MAX_OUTPUT_TOKENS)
        assert f"costs ${worst.normalize():f}, more than the ${limit.normalize():f} left" in message
        fits = math.floor((limit - IN * len(unbounded)) / OUT)
        assert message.endswith(f"a request with max_tokens of at most {fits:,} would fit.")
    too_big = chat_body("mock-chat", max_tokens=101)
    refused_at = time.monotonic()
    for origin in edges:  # each edge caches this refusal
        assert (await send(origin, tenant, too_big)).status_code == 429
    await tenant.put_budget(limit * 100)
    statuses = [(await send(origin, tenant, too_big)).status_code for origin in edges]
    assert time.monotonic() - refused_at < REFUSAL_TTL_S, "too slow to tell: refusals expired"
    assert statuses == [200, 200]


async def test_a_top_up_admits_at_once_on_both_edges(
    stack: Stack, base_url: str, edges: list[str]
) -> None:
    tenant = await Tenant(base_url, stack).create()
    await tenant.top_up(W / 2)
    refused_at = time.monotonic()
    for origin in edges:
        resp = await send(origin, tenant, SLOW)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["message"] == "Credits exhausted."
    await tenant.top_up(W * ADMITS)
    assert time.monotonic() - refused_at < REFUSAL_TTL_S, "too slow to tell: refusals expired"
    held_together, statuses = await burst(stack, edges, tenant)
    admitted = statuses.count(200)
    assert admitted > 0 and held_together <= ADMITS, statuses
    assert tenant.billed(admitted) <= W / 2 + W * ADMITS
