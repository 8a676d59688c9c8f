"""CompleteRequest fields 8-11 end to end: router -> fake provider -> NATS -> billing's ledger.

The router is called directly over gRPC (as the edge does), with a managed
credential, a real budget lease from billing, an endpoint and
``include_generation_context``; the test then reads what the fake provider
received and what billing wrote. The project is a fresh id, so its budget and
lease touch no other test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from decimal import Decimal
from typing import Any

import grpc
import nats
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common import subjects
from gateway_common.billing_api import BudgetSet, Lease, LeaseRequest
from gateway_common.db import sync_url
from tests.integration.helpers import fake_requests, ledger_entry, poll

pytestmark = pytest.mark.integration

ENDPOINT = "wiring-endpoint"


def _exact(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal, parse_int=Decimal)


async def _lease(nats_url: str, project_id: str) -> str:
    """A lease of ``project_id``'s (new) budget, granted by billing."""
    nc = await nats.connect(nats_url)
    try:
        budget = BudgetSet(project_id=project_id, limit=Decimal("10"))
        await nc.request(subjects.BILLING_BUDGET_SET, budget.to_bytes(), timeout=10)
        want = LeaseRequest(edge_id="wiring-test", project_id=project_id, want=Decimal("1"))
        reply = await nc.request(subjects.BILLING_BUDGET_LEASE, want.to_bytes(), timeout=10)
    finally:
        await nc.close()
    lease = Lease.model_validate_json(reply.data)
    assert lease.status == "ok" and lease.lease_id, lease
    return lease.lease_id


def _request(
    project_id: str, lease_id: str, credential: str, *, stream: bool
) -> tuple[router_pb2.CompleteRequest, str]:
    marker = uuid.uuid4().hex
    body: dict[str, Any] = {
        "model": "mock-reasoning",
        "messages": [{"role": "user", "content": f"price this {marker}"}],
    }
    if stream:
        body["stream"] = True
    request = router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS,
        model="mock-reasoning",
        body=json.dumps(body).encode(),
        request_id=f"wiring-{marker}",
        project_id=project_id,
        credentials=[router_pb2.ProviderCredential(provider="fake", api_key=credential)],
        budget_lease_id=lease_id,
        include_generation_context=True,
        endpoint=ENDPOINT,
    )
    return request, marker


def _call(stack: Stack, request: router_pb2.CompleteRequest, *, stream: bool) -> list[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.ports.router}") as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        if stream:
            return list(stub.StreamComplete(request, timeout=20))
        return [stub.Complete(request, timeout=20)]


def _ledger_items(stack: Stack, request_id: str) -> tuple[Any, list[dict[str, Any]]]:
    entry, rows = poll(lambda: ledger_entry(sync_url(stack.database_url("billing")), request_id))
    items = [
        {
            "sku": row.sku,
            "amount": Decimal(str(row.amount)),
            "unit_price": Decimal(str(row.unit_price)),
            "quantity": row.quantity,
            "description": row.description,
        }
        for row in rows
    ]
    return entry, items


def _lease_consumed(stack: Stack, lease_id: str) -> Decimal:
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            consumed = conn.execute(
                sa.text("SELECT consumed FROM budget_leases WHERE lease_id = :l"), {"l": lease_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return Decimal(str(consumed))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_generation_context_is_the_ledger_and_the_managed_key_reaches_the_provider(
    stack: Stack, fake_provider_url: str, stream: bool
) -> None:
    project_id = f"proj-wiring-{uuid.uuid4().hex[:12]}"
    lease_id = asyncio.run(_lease(stack.nats_url, project_id))
    credential = "sk-managed-" + secrets.token_urlsafe(16)
    request, marker = _request(project_id, lease_id, credential, stream=stream)

    replies = _call(stack, request, stream=stream)

    if stream:
        kinds = [event.WhichOneof("event") for event in replies]
        assert kinds[0] == "route" and kinds[-2:] == ["chunks", "usage"]
        chunks = [c for e in replies if e.WhichOneof("event") == "chunks" for c in e.chunks.chunks]
        context_chunk = _exact(chunks[-1])  # the finishing chunk (no include_usage asked)
        assert context_chunk["object"] == "chat.completion.chunk"
        assert context_chunk["choices"][0]["finish_reason"] == "stop"
        assert all(b"generation_context" not in c for c in chunks[:-1])
        context = context_chunk["generation_context"]
    else:
        context = _exact(replies[0].body)["generation_context"]
    assert context["runned_functions"] == []

    entry, ledger = _ledger_items(stack, request.request_id)
    by_sku = sorted(context["generated_usage"], key=lambda item: item["sku"])
    assert by_sku == ledger  # same items, quantities, prices and amounts, to the last digit
    assert {item["sku"] for item in ledger} == {
        "inference.chat_completions.in",
        "inference.chat_completions.out",
        "inference.chat_completions.out.reasoning",
    }
    assert (entry.endpoint, entry.project_id, bool(entry.byok)) == (ENDPOINT, project_id, False)
    total = sum((item["amount"] for item in ledger), Decimal(0))
    assert Decimal(str(entry.total_amount)) == total
    assert _lease_consumed(stack, lease_id) == total  # billing charged the lease it was given

    [seen] = fake_requests(fake_provider_url, marker)
    assert seen["bearer_sha256"] == hashlib.sha256(credential.encode()).hexdigest()
    for log in stack.log_dir.glob("*.log"):
        assert credential not in log.read_text(errors="replace"), log.name
