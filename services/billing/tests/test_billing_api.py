"""Billing's NATS request/reply API, two replicas on one database, real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from billing.config import BillingSettings
from billing.main import run
from gateway_common import subjects
from gateway_common.billing_api import (
    Ack,
    BudgetsChanged,
    BudgetSet,
    CreditsReport,
    CreditsTopUp,
    Lease,
    LeaseRelease,
    LeaseRequest,
    Reply,
    RequestQuery,
    RequestReport,
    SpendQuery,
    SpendReport,
    UsageQuery,
    UsageReport,
)
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.testing import wait_for

pytestmark = pytest.mark.timeout(180)

R = TypeVar("R", bound=BaseModel)


async def ask(nc: Client, subject: str, body: BaseModel | bytes, reply: type[R]) -> R:
    payload = body if isinstance(body, bytes) else body.to_bytes()
    # Generous: these tests check what is granted, not how fast; 200 concurrent lease
    # requests on a loaded 2-core machine can queue for seconds behind the per-project lock.
    answer = await nc.request(subject, payload, timeout=45)
    return reply.model_validate_json(answer.data)


async def health_responders(nc: Client) -> int:
    """How many billing replicas answer one health request within 0.3 s."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subjects.health_subject("billing"), b"", reply=inbox)
    count = 0
    try:
        while True:
            await sub.next_msg(timeout=0.3)
            count += 1
    except nats.errors.TimeoutError:
        return count
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def replicas(
    nats_url: str, db_url: str, catalog_path: Path
) -> AsyncIterator[tuple[Client, Client]]:
    """Two billing replicas (one database) and two client connections ("edges").

    The replicas start one after the other: Alembic's upgrade is not thread-safe
    within one process (separate processes, as in production, may overlap).
    """
    settings = BillingSettings(
        nats_url=nats_url, database_url=db_url, catalog_path=catalog_path, reaper_interval_s=0.2
    )
    stop = asyncio.Event()
    edges = [await nats.connect(nats_url), await nats.connect(nats_url)]
    services: list[asyncio.Task[None]] = []
    try:
        for replicas in (1, 2):
            services.append(asyncio.create_task(run(settings, stop)))

            async def answering(replicas: int = replicas) -> bool | None:
                return True if await health_responders(edges[0]) == replicas else None

            await wait_for(answering, timeout_s=30)
        yield edges[0], edges[1]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*services), timeout=20)
        for edge in edges:
            await edge.close()


async def test_leases_from_two_edges_never_exceed_the_budget(
    replicas: tuple[Client, Client],
) -> None:
    edge_a, edge_b = replicas
    project = f"proj-{uuid.uuid4().hex[:10]}"
    budget = BudgetSet(project_id=project, limit=Decimal("1.00"))
    assert (await ask(edge_a, subjects.BILLING_BUDGET_SET, budget, Ack)).status == "ok"

    def request(edge: str) -> LeaseRequest:
        return LeaseRequest(edge_id=edge, project_id=project, want=Decimal("0.03"))

    leases = await asyncio.gather(
        *(
            ask(edge, subjects.BILLING_BUDGET_LEASE, request(name), Lease)
            for _ in range(100)
            for edge, name in ((edge_a, "edge-a"), (edge_b, "edge-b"))
        )
    )
    assert {lease.status for lease in leases} == {"ok"}
    assert sum(lease.granted for lease in leases) == Decimal("1.00")
    assert sum(1 for lease in leases if lease.granted) == 34  # 33 * 0.03 + 0.01
    assert {lease.limited_by for lease in leases if not lease.granted} == {"project_budget"}

    # Releasing everything unused frees the budget again.
    for lease in leases:
        if lease.lease_id:
            release = LeaseRelease(lease_id=lease.lease_id, consumed=Decimal(0))
            assert (await ask(edge_b, subjects.BILLING_BUDGET_RELEASE, release, Ack)).status == "ok"
    state = await ask(
        edge_a, subjects.BILLING_SPEND_GET, SpendQuery(project_id=project), SpendReport
    )
    assert state.budgets[0].remaining == Decimal("1.00")


async def test_bad_requests_are_answered_invalid(replicas: tuple[Client, Client]) -> None:
    edge, _ = replicas
    bad = await ask(edge, subjects.BILLING_BUDGET_LEASE, b'{"edge_id": "e"}', Lease)
    assert bad.status == "invalid" and "project_id" in bad.message
    negative = orjson.dumps({"project_id": "p", "limit": "-1"})
    assert (await ask(edge, subjects.BILLING_BUDGET_SET, negative, Ack)).status == "invalid"
    unknown = LeaseRelease(lease_id="no-such-lease", consumed=Decimal(0))
    assert (await ask(edge, subjects.BILLING_BUDGET_RELEASE, unknown, Ack)).status == "not_found"


async def test_credits_spend_usage_and_request_lookups(
    replicas: tuple[Client, Client], nats_url: str
) -> None:
    edge, _ = replicas
    project = f"proj-{uuid.uuid4().hex[:10]}"
    top_up = CreditsTopUp(project_id=project, topup_id="order-1", amount=Decimal("5"))
    first = await ask(edge, subjects.BILLING_CREDITS_TOPUP, top_up, CreditsReport)
    again = await ask(edge, subjects.BILLING_CREDITS_TOPUP, top_up, CreditsReport)
    assert (first.applied, again.applied, again.balance) == (True, False, Decimal(5))

    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    events = [
        UsageRecorded(
            occurred_at=day - timedelta(days=offset),
            request_id=f"req-{index}",
            project_id=project,
            api_key_id=key,
            operation="chat.completions",
            model=model,
            provider="fake",
            deployment="fake/x",
            endpoint="summarize" if key == "k1" else "",
            usage=TokenUsage(prompt_tokens=1000, completion_tokens=100),
        )
        for index, (offset, key, model) in enumerate(
            [(0, "k1", "chat-a"), (0, "k2", "chat-b"), (1, "k1", "chat-b")]
        )
    ]
    js = edge.jetstream()
    for event in events:
        await js.publish(
            subjects.USAGE_RECORDED, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id}
        )
    # chat-a: 1000 * 7.5e-8 + 100 * 3e-7; chat-b: 1000 * 1.1e-6 + 100 * 4.4e-6
    cost_a, cost_b = Decimal("0.000105"), Decimal("0.00154")

    async def billed() -> UsageReport | None:
        query = UsageQuery(
            project_id=project,
            group_by="key",
            start=day - timedelta(days=2),
            end=day + timedelta(hours=1),
        )
        found = await ask(edge, subjects.BILLING_USAGE_QUERY, query, UsageReport)
        return found if sum(row.requests for row in found.rows) == 3 else None

    by_key = await wait_for(billed, timeout_s=20)
    assert [(r.group, r.requests, r.prompt_tokens, r.amount) for r in by_key.rows] == [
        ("k1", 2, 2000, cost_a + cost_b),
        ("k2", 1, 1000, cost_b),
    ]
    assert by_key.total == cost_a + 2 * cost_b

    window = {
        "project_id": project,
        "from": (day - timedelta(days=2)).isoformat(),
        "to": (day + timedelta(hours=1)).isoformat(),
    }
    for group_by, expected in [
        ("model", [("chat-a", cost_a), ("chat-b", 2 * cost_b)]),
        ("endpoint", [("", cost_b), ("summarize", cost_a + cost_b)]),
        (
            "day",
            [
                ((day - timedelta(days=1)).date().isoformat(), cost_b),
                (day.date().isoformat(), cost_a + cost_b),
            ],
        ),
    ]:
        body = orjson.dumps({**window, "group_by": group_by})
        rows = (await ask(edge, subjects.BILLING_USAGE_QUERY, body, UsageReport)).rows
        assert [(row.group, row.amount) for row in rows] == expected, group_by

    found = await ask(
        edge,
        subjects.BILLING_REQUEST_GET,
        RequestQuery(project_id=project, request_id="req-0"),
        RequestReport,
    )
    [entry] = found.entries
    assert (entry.event_id, entry.total_amount, entry.endpoint) == (
        events[0].event_id,
        cost_a,
        "summarize",
    )
    assert [(i.sku, i.quantity, i.amount) for i in entry.line_items] == [
        ("inference.chat_completions.in", 1000, Decimal("0.000075")),
        ("inference.chat_completions.out", 100, Decimal("0.00003")),
    ]
    hidden = await ask(
        edge,
        subjects.BILLING_REQUEST_GET,
        RequestQuery(project_id="someone-else", request_id="req-0"),
        RequestReport,
    )
    assert (hidden.status, hidden.entries) == ("not_found", [])

    state = await ask(
        edge,
        subjects.BILLING_SPEND_GET,
        SpendQuery(project_id=project, api_key_id="k1"),
        SpendReport,
    )
    this_month = cost_a + cost_b if (day - timedelta(days=1)).month == day.month else cost_a
    assert state.key_spend == this_month
    assert state.credits is not None
    assert state.credits.balance == Decimal(5) - cost_a - 2 * cost_b


async def test_every_committed_limit_change_is_announced_after_its_commit(
    replicas: tuple[Client, Client],
) -> None:
    """Set, removal, key budgets and applied top-ups are announced; a repeated top-up and a
    refused request are not. The change is committed when its announcement arrives."""
    edge, admin = replicas
    project = f"proj-{uuid.uuid4().hex[:10]}"
    seen: asyncio.Queue[tuple[BudgetsChanged, SpendReport]] = asyncio.Queue()

    async def on_change(msg: Msg) -> None:
        change = BudgetsChanged.model_validate_json(msg.data)
        query = SpendQuery(project_id=project, api_key_id="k1", endpoint_id="ep-1")
        seen.put_nowait((change, await ask(edge, subjects.BILLING_SPEND_GET, query, SpendReport)))

    async def announced(
        subject: str, change: BaseModel | bytes, reply: type[Reply]
    ) -> tuple[tuple[str, str, str], SpendReport]:
        await ask(admin, subject, change, reply)
        got, state = await asyncio.wait_for(seen.get(), timeout=10)
        assert got.project_id == project
        return (got.account.kind, got.account.id, got.change), state

    def budgets(state: SpendReport) -> list[tuple[str, Decimal]]:
        return sorted((b.scope, b.limit) for b in state.budgets)

    sub = await edge.subscribe(subjects.BILLING_BUDGETS_CHANGED, cb=on_change)
    await edge.flush()
    try:
        project_budget = BudgetSet(project_id=project, limit=Decimal("2"))
        change, state = await announced(subjects.BILLING_BUDGET_SET, project_budget, Ack)
        assert (change, budgets(state)) == (
            ("project", project, "budget_set"),
            [("project", Decimal(2))],
        )
        key_budget = BudgetSet(project_id=project, scope="key", api_key_id="k1", limit=Decimal(1))
        change, state = await announced(subjects.BILLING_BUDGET_SET, key_budget, Ack)
        assert (change, budgets(state)) == (
            ("key", "k1", "budget_set"),
            [("key", Decimal(1)), ("project", Decimal(2))],
        )
        endpoint_budget = BudgetSet(
            project_id=project, scope="endpoint", endpoint_id="ep-1", limit=Decimal("0.5")
        )
        change, state = await announced(subjects.BILLING_BUDGET_SET, endpoint_budget, Ack)
        assert (change, budgets(state)) == (
            ("endpoint", "ep-1", "budget_set"),
            [("endpoint", Decimal("0.5")), ("key", Decimal(1)), ("project", Decimal(2))],
        )
        removal = BudgetSet(project_id=project, limit=None)
        change, state = await announced(subjects.BILLING_BUDGET_SET, removal, Ack)
        assert (change, budgets(state)) == (
            ("project", project, "budget_removed"),
            [("endpoint", Decimal("0.5")), ("key", Decimal(1))],
        )
        top_up = CreditsTopUp(project_id=project, topup_id="t1", amount=Decimal("3"))
        change, state = await announced(subjects.BILLING_CREDITS_TOPUP, top_up, CreditsReport)
        assert change == ("project", project, "credits_added")
        assert state.credits is not None and state.credits.balance == Decimal(3)
        # Neither a repeated top-up nor a refused request changes anything: no announcement.
        await ask(admin, subjects.BILLING_CREDITS_TOPUP, top_up, CreditsReport)
        invalid = orjson.dumps({"project_id": project, "limit": "-1"})
        assert (await ask(admin, subjects.BILLING_BUDGET_SET, invalid, Ack)).status == "invalid"
        await ask(admin, subjects.BILLING_BUDGET_SET, project_budget, Ack)  # a marker
        marker, _ = await asyncio.wait_for(seen.get(), timeout=10)
        assert (marker.account.kind, marker.change) == ("project", "budget_set")
    finally:
        await sub.unsubscribe()
