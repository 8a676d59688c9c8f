"""Billing SIGKILLed three times under traffic still bills every request exactly once.

N chat requests go through the gateway from a few concurrent clients. Billing
is SIGKILLed three times while they flow (with fetched messages unacked,
possibly mid-transaction) and restarted each time after more requests have
completed with it down. The ledger must end with exactly N entries, one per
request, and its total must equal the usage the clients received, priced
here by hand from the catalog. A message fetched by a killed billing is
redelivered only after the consumer's ack wait (30 s), hence the long deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.catalog import load_catalog
from gateway_common.db import sync_url
from tests.integration.helpers import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 60
CLIENTS = 4
KILLS = 3


async def _traffic(base_url: str, api_key: str, marker: str, done: list[dict[str, int]]) -> None:
    """Send N requests from CLIENTS concurrent clients; append each response's usage to done."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(N):
        queue.put_nowait(index)

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as http:
            while not queue.empty():
                index = queue.get_nowait()
                body = {
                    "model": "mock-chat",
                    "messages": [{"role": "user", "content": f"{marker} request {index} " * 3}],
                }
                resp = await http.post("/v1/chat/completions", json=body)
                assert resp.status_code == 200, resp.text
                done.append({**resp.json()["usage"], "request_id": resp.headers["x-request-id"]})

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def _until(condition_met: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll ``condition_met`` (the traffic runs meanwhile); fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition_met():
        assert asyncio.get_running_loop().time() < deadline, "traffic stalled"
        await asyncio.sleep(0.02)


def _ledger(stack: Stack, request_ids: set[str]) -> list[sa.Row] | None:
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT event_id, request_id, prompt_tokens, completion_tokens, total_amount "
                    "FROM ledger_entries WHERE request_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": sorted(request_ids)},
            ).all()
    finally:
        engine.dispose()
    return list(rows) if len(rows) >= len(request_ids) else None


async def test_every_request_is_billed_exactly_once_across_billing_crashes(
    stack: Stack, base_url: str, api_key: str
) -> None:
    marker = uuid.uuid4().hex
    done: list[dict[str, int]] = []
    traffic = asyncio.create_task(_traffic(base_url, api_key, marker, done))
    kills: list[int] = []
    try:
        for round_ in range(KILLS):
            await _until(lambda r=round_: len(done) >= (r + 1) * N // (KILLS + 1))
            kills.append(stack.kill("billing"))
            down_since = len(done)
            await _until(lambda since=down_since: len(done) >= min(since + 5, N))
            stack.restart("billing")
        await asyncio.wait_for(traffic, timeout=120)
    finally:
        if stack.children["billing"].returncode is not None:
            stack.restart("billing")  # the session's stack serves later tests
    assert kills == [-9] * KILLS
    assert len(done) == N

    request_ids = {usage["request_id"] for usage in done}
    assert len(request_ids) == N
    rows = await asyncio.to_thread(poll, lambda: _ledger(stack, request_ids), timeout=120)

    assert len(rows) == N
    assert len({row.event_id for row in rows}) == N
    assert {row.request_id for row in rows} == request_ids
    prices = load_catalog(stack.catalog_path).models["mock-chat"].prices
    received = sum(
        (u["prompt_tokens"] * prices.input + u["completion_tokens"] * prices.output for u in done),
        Decimal(0),
    )
    billed = sum((Decimal(str(row.total_amount)) for row in rows), Decimal(0))
    assert billed == received
    by_request = {u["request_id"]: u for u in done}
    for row in rows:
        usage = by_request[row.request_id]
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
