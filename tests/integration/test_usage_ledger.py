"""Every completed request becomes exactly one priced ledger entry in billing's tables."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.catalog import load_catalog
from gateway_common.db import sync_url
from tests.integration.helpers import poll

pytestmark = pytest.mark.integration

PRICES = load_catalog(Path(__file__).resolve().parents[2] / "config" / "catalog.yaml").models


def _ledger(stack: Stack, request_id: str) -> tuple[list[Any], list[Any]] | None:
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            entries = conn.execute(
                sa.text("SELECT * FROM ledger_entries WHERE request_id = :r"), {"r": request_id}
            ).all()
            if not entries:
                return None
            items = conn.execute(
                sa.text("SELECT * FROM ledger_line_items WHERE entry_id = :e ORDER BY sku"),
                {"e": entries[0].id},
            ).all()
            return entries, items
    finally:
        engine.dispose()


def _chat(base_url: str, api_key: str, *, stream: bool) -> tuple[str, dict[str, Any]]:
    body = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": f"bill me please {uuid.uuid4().hex}"}],
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=20
    ) as resp:
        assert resp.status_code == 200
        raw = resp.read()
        request_id = resp.headers["x-request-id"]
    if not stream:
        return request_id, httpx.Response(200, content=raw).json()["usage"]
    import orjson

    data = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return request_id, orjson.loads(data[-2])["usage"]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_request_is_billed_once_with_exact_line_items(
    stack: Stack, base_url: str, api_key: str, stream: bool
) -> None:
    request_id, usage = _chat(base_url, api_key, stream=stream)

    entries, items = poll(lambda: _ledger(stack, request_id))

    (entry,) = entries
    assert entry.model == "mock-chat"
    assert entry.operation == "chat.completions"
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    prices = PRICES["mock-chat"].prices
    by_sku = {item.sku: item for item in items}
    assert set(by_sku) == {"inference.chat_completions.in", "inference.chat_completions.out"}
    expected = {
        "inference.chat_completions.in": (usage["prompt_tokens"], prices.input),
        "inference.chat_completions.out": (usage["completion_tokens"], prices.output),
    }
    total = Decimal(0)
    for sku, (quantity, unit_price) in expected.items():
        item = by_sku[sku]
        assert item.quantity == quantity
        assert Decimal(str(item.unit_price)) == unit_price
        assert Decimal(str(item.amount)) == quantity * unit_price
        assert item.description == "Inference for AI model 'mock-chat'"
        total += quantity * unit_price
    assert Decimal(str(entry.total_amount)) == total
