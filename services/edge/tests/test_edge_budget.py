"""``edge.budget`` and ``edge.pricebook`` against the session's real billing process.

Budgets and credits are set through billing's own subjects; lease traffic is
observed with a plain (non-queue) subscription next to billing's queue group.
Time is a test clock, so lease expiry and vanished requests need no sleeping.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from edge.auth import KeyEntry
from edge.budget import BudgetGate, BudgetPolicy, Ticket
from edge.budget_client import BillingClient
from edge.budgetsync import BudgetSync
from edge.pricebook import PriceBook
from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common import billing_api as wire
from gateway_common import subjects
from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    ModelNotFound,
    ProviderTimeout,
    ServiceUnavailable,
)
from gateway_common.testing import nats_server, service_process

from .billing_process import ROOT, billing_answers
from .support import eventually

pytestmark = pytest.mark.timeout(60)

CHAT = router_pb2.OPERATION_CHAT_COMPLETIONS
CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  chat:
    aliases: [chat-latest]
    deployments: [{provider: fake, model: c}]
    prices: {input: "0.000001", output: "0.000002", cached_input: "0.0000005"}
    context_window: 1000
    max_output_tokens: 300
  bare:
    deployments: [{provider: fake, model: b}]
    prices: {input: "0.000001", output: "0.000002"}
  embed:
    deployments: [{provider: fake, model: e}]
    prices: {input: "0.0000001"}
    capabilities: [embeddings]
"""
BODY = b'{"model":"chat","messages":[{"role":"user","content":"hello"}]}'
#: BODY's worst case with max_tokens 100: len(BODY) prompt tokens + 100 completion tokens.
WORST = Decimal("0.000001") * len(BODY) + Decimal("0.000002") * 100


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prices(tmp_path: Path) -> PriceBook:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return PriceBook(path, default_max_output_tokens=50)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


def gate_on(nc: Client, prices: PriceBook, clock: Clock, **policy: object) -> BudgetGate:
    return BudgetGate(
        BillingClient(nc, timeout_s=1.0),
        prices,
        edge_id="test-edge",
        policy=BudgetPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.fixture
async def gate(nc: Client, prices: PriceBook) -> AsyncIterator[BudgetGate]:
    async with gate_on(nc, prices, Clock(), refusal_ttl_s=0.0) as gate:
        yield gate


def new_key() -> KeyEntry:
    return KeyEntry(key_id=uuid.uuid4().hex, project_id=uuid.uuid4().hex, scopes=frozenset())


async def ask(nc: Client, subject: str, message: wire.BudgetSet | wire.CreditsTopUp) -> None:
    reply = orjson.loads((await nc.request(subject, message.to_bytes(), timeout=5)).data)
    assert reply["status"] == "ok", reply


async def set_budget(
    nc: Client, key: KeyEntry, limit: Decimal, *, scope: str = "project", endpoint: str = ""
) -> None:
    await ask(
        nc,
        subjects.BILLING_BUDGET_SET,
        wire.BudgetSet(
            project_id=key.project_id,
            scope=scope,  # type: ignore[arg-type]
            api_key_id=key.key_id if scope == "key" else "",
            endpoint_id=endpoint if scope == "endpoint" else "",
            limit=limit,
        ),
    )


async def admit(
    gate: BudgetGate, key: KeyEntry, max_tokens: int | None = 100, *, endpoint: str = ""
) -> Ticket:
    return await gate.admit(
        key, CHAT, "chat", BODY, max_output_tokens=max_tokens, endpoint_id=endpoint
    )


async def observe(nc: Client, subject: str) -> list[bytes]:
    """Every request sent on ``subject`` from now on (billing still answers them)."""
    seen: list[bytes] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.data)

    await nc.subscribe(subject, cb=record)
    await nc.flush()
    return seen


async def spend(nc: Client, key: KeyEntry) -> wire.SpendReport:
    query = wire.SpendQuery(project_id=key.project_id, api_key_id=key.key_id)
    msg = await nc.request(subjects.BILLING_SPEND_GET, query.to_bytes(), timeout=5)
    return wire.SpendReport.model_validate_json(msg.data)


# -- the worst case ------------------------------------------------------------------------


def test_worst_case_counts_body_bytes_and_the_completion_cap(prices: PriceBook) -> None:
    estimate = prices.estimate(CHAT, "chat", BODY, max_output_tokens=100, choices=1)
    assert estimate is not None
    assert (estimate.model, estimate.operation, estimate.amount) == (
        "chat",
        "chat.completions",
        WORST,
    )
    three = prices.estimate(CHAT, "@fake/chat-latest", BODY, max_output_tokens=100, choices=3)
    assert three is not None and three.model == "chat"
    assert three.amount == Decimal("0.000001") * len(BODY) + Decimal("0.000002") * 300


def test_without_max_tokens_the_model_maximum_bounds_the_completion(prices: PriceBook) -> None:
    def amount(model: str, op: int = CHAT, body: bytes = BODY) -> Decimal:
        estimate = prices.estimate(op, model, body, max_output_tokens=None, choices=1)  # type: ignore[arg-type]
        assert estimate is not None
        return estimate.amount

    per_in, per_out = Decimal("0.000001"), Decimal("0.000002")
    assert amount("chat") == per_in * len(BODY) + per_out * 300  # max_output_tokens
    assert amount("bare") == per_in * len(BODY) + per_out * 50  # the configured guess
    assert amount("embed", router_pb2.OPERATION_EMBEDDINGS) == Decimal("0.0000001") * len(BODY)
    # Media cost tokens unrelated to their bytes: the whole context window is reserved.
    image = b'{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}'
    assert amount("chat", body=image) == per_in * 1000 + per_out * 300
    assert prices.estimate(CHAT, "nope", BODY, max_output_tokens=None, choices=1) is None


def test_real_cost_prices_cached_tokens_at_their_rate(prices: PriceBook) -> None:
    estimate = prices.estimate(CHAT, "chat", BODY, max_output_tokens=100, choices=1)
    assert estimate is not None
    usage = types_pb2.Usage(prompt_tokens=10, cached_tokens=4, completion_tokens=7)
    expected = Decimal("0.000001") * 6 + Decimal("0.0000005") * 4 + Decimal("0.000002") * 7
    assert prices.cost(estimate, usage) == expected


# -- admission -----------------------------------------------------------------------------


async def test_a_budget_admits_exactly_what_it_covers(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    await set_budget(nc, key, WORST * 5)
    tickets = [await admit(gate, key) for _ in range(5)]
    assert all(t.lease_id for t in tickets)
    with pytest.raises(BudgetExceeded) as refused:
        await admit(gate, key)
    assert refused.value.http_status == 429
    assert (refused.value.code, refused.value.error_type) == ("insufficient_quota",) * 2
    # Requests that cost less than they reserved give the rest back to the next ones.
    for ticket in tickets[:2]:
        ticket.record(types_pb2.Usage(prompt_tokens=1, completion_tokens=1))
        ticket.close()
    assert (await admit(gate, key)).lease_id
    with pytest.raises(BudgetExceeded):
        await admit(gate, key)


async def test_concurrent_requests_share_one_lease_request(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    await set_budget(nc, key, WORST * 100)
    leases = await observe(nc, subjects.BILLING_BUDGET_LEASE)
    tickets = await asyncio.gather(*(admit(gate, key) for _ in range(10)))
    assert len({t.lease_id for t in tickets}) == 1
    assert len(leases) == 1
    request = wire.LeaseRequest.model_validate_json(leases[0])
    assert (request.want, request.min) == (WORST * 10, WORST)


async def test_an_unlimited_project_asks_billing_once(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    leases = await observe(nc, subjects.BILLING_BUDGET_LEASE)
    tickets = await asyncio.gather(*(admit(gate, key) for _ in range(20)))
    tickets += [await admit(gate, key) for _ in range(5)]
    assert {t.lease_id for t in tickets} == {""}
    assert len(leases) == 1


async def test_a_key_budget_is_refused_in_the_keys_name(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    await set_budget(nc, key, WORST / 2, scope="key")
    with pytest.raises(BudgetExceeded, match="this API key's monthly budget"):
        await admit(gate, key)


async def test_an_endpoint_budget_binds_that_endpoints_calls_only(
    gate: BudgetGate, nc: Client
) -> None:
    """Every key's calls through the endpoint share its budget; /v1 and other endpoints don't."""
    key = new_key()
    sibling = KeyEntry(key_id=uuid.uuid4().hex, project_id=key.project_id, scopes=frozenset())
    await set_budget(nc, key, WORST * 3, scope="endpoint", endpoint="ep-1")
    leases = await observe(nc, subjects.BILLING_BUDGET_LEASE)
    tickets = [await admit(gate, key, endpoint="ep-1") for _ in range(3)]
    assert all(t.lease_id for t in tickets)
    with pytest.raises(BudgetExceeded, match="this endpoint's monthly budget"):
        await admit(gate, key, endpoint="ep-1")
    with pytest.raises(BudgetExceeded, match="this endpoint's monthly budget"):
        await admit(gate, sibling, endpoint="ep-1")  # the key's lease holds all of it
    assert (await admit(gate, key)).lease_id == ""
    assert (await admit(gate, key, endpoint="ep-2")).lease_id == ""
    asked = [wire.LeaseRequest.model_validate_json(data) for data in leases]
    assert {r.endpoint_id for r in asked} == {"ep-1", "ep-2", ""}
    for ticket in tickets:
        ticket.close()


async def test_an_endpoint_change_drops_that_endpoints_accounts_only(
    synced: BudgetGate, nc: Client
) -> None:
    key = new_key()
    await set_budget(nc, key, WORST * 100)
    held = (await admit(synced, key)).lease_id
    other = (await admit(synced, key, endpoint="ep-2")).lease_id
    old = (await admit(synced, key, endpoint="ep-1")).lease_id
    await set_budget(nc, key, WORST / 2, scope="endpoint", endpoint="ep-1")

    async def refused() -> bool:
        try:
            (await admit(synced, key, endpoint="ep-1")).close()
        except BudgetExceeded:
            return True
        return False

    await eventually(refused, within=1.0)
    assert (await admit(synced, key)).lease_id == held
    assert (await admit(synced, key, endpoint="ep-2")).lease_id == other
    assert old not in (held, other)


async def test_exhausted_credits_refuse_until_a_top_up(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    topup = wire.CreditsTopUp(project_id=key.project_id, topup_id="t1", amount=WORST / 2)
    await ask(nc, subjects.BILLING_CREDITS_TOPUP, topup)
    with pytest.raises(CreditsExhausted) as refused:
        await admit(gate, key)
    assert (refused.value.http_status, refused.value.message) == (403, "Credits exhausted.")
    topup = wire.CreditsTopUp(project_id=key.project_id, topup_id="t2", amount=WORST)
    await ask(nc, subjects.BILLING_CREDITS_TOPUP, topup)
    assert (await admit(gate, key)).lease_id


async def test_leases_are_released_with_what_was_spent(nc: Client, prices: PriceBook) -> None:
    key, clock = new_key(), Clock()
    await set_budget(nc, key, WORST * 40)
    releases = await observe(nc, subjects.BILLING_BUDGET_RELEASE)
    async with gate_on(nc, prices, clock) as gate:
        done, cut, vanished = [await admit(gate, key) for _ in range(3)]
        done.record(types_pb2.Usage(prompt_tokens=10, completion_tokens=5))
        done.close()
        cut.close(asyncio.CancelledError())  # cost unknown: the whole reservation counts
        assert (await spend(nc, key)).budgets[0].held == WORST * 10
        clock.now += 400  # past the lease's expiry and the request deadline
        gate.sweep()  # closes the vanished request at its reservation, releases the lease
        assert vanished.reserved == WORST

        async def released() -> bool:
            return len(releases) == 1

        await eventually(released)
    consumed = Decimal("0.000001") * 10 + Decimal("0.000002") * 5 + WORST * 2
    assert wire.LeaseRelease.model_validate_json(releases[0]).consumed == consumed
    assert (await spend(nc, key)).budgets[0].held == consumed


async def test_an_error_the_router_answered_costs_nothing(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    await set_budget(nc, key, WORST * 2)
    for _ in range(4):  # twice the budget: refusals release their reservations
        with pytest.raises(ModelNotFound), await admit(gate, key):
            raise ModelNotFound("no such model")
    with pytest.raises(ProviderTimeout), await admit(gate, key):
        raise ProviderTimeout("maybe billed")
    await admit(gate, key)
    with pytest.raises(BudgetExceeded):
        await admit(gate, key)


# -- billing unreachable -------------------------------------------------------------------


async def test_without_billing_unlimited_stays_open_and_budgets_close(
    tmp_path: Path, prices: PriceBook
) -> None:
    clock = Clock()
    with nats_server(tmp_path / "nats") as url:
        nc = await nats.connect(url)
        try:
            budgeted, unlimited = new_key(), new_key()
            async with gate_on(nc, prices, clock, fail_open_s=5.0) as gate:
                env = {
                    "NATS_URL": url,
                    "GATEWAY_DATA_DIR": str(tmp_path),
                    "BILLING_CATALOG_PATH": str(ROOT / "config" / "catalog.yaml"),
                    "PYTHONPATH": os.pathsep.join(sys.path),
                }
                with service_process("billing", env, log_path=tmp_path / "billing.log"):
                    await billing_answers(url)
                    await set_budget(nc, budgeted, WORST * 10)
                    assert (await admit(gate, budgeted)).lease_id
                    assert (await admit(gate, unlimited)).lease_id == ""
                clock.now += 60  # both the lease and the unlimited answer have expired
                with pytest.raises(ServiceUnavailable):
                    await admit(gate, budgeted)
                with pytest.raises(ServiceUnavailable):
                    await admit(gate, new_key())  # never seen: closed too
                assert (await admit(gate, unlimited)).lease_id == ""
        finally:
            await nc.close()


# -- limits that change (billing.budgets.changed.v1, edge.budgetsync) -----------------------


@pytest.fixture
async def synced(nc: Client, prices: PriceBook) -> AsyncIterator[BudgetGate]:
    """A gate kept current by billing's announcements; refusals would be cached for 30 s."""
    async with (
        gate_on(nc, prices, Clock(), refusal_ttl_s=30.0) as gate,
        BudgetSync(gate, nc),
    ):
        yield gate


async def within_a_second(gate: BudgetGate, key: KeyEntry, *, not_under: str = "") -> Ticket:
    """The first ticket admitted within 1 s under a lease other than ``not_under``."""
    admitted: list[Ticket] = []

    async def check() -> bool:
        try:
            ticket = await admit(gate, key)
        except (BudgetExceeded, CreditsExhausted):
            return False
        admitted.append(ticket)
        return ticket.lease_id not in ("", not_under)

    await eventually(check, within=1.0)
    return admitted[-1]


async def test_a_budget_set_on_an_unlimited_project_binds_at_once(
    synced: BudgetGate, nc: Client
) -> None:
    key, other = new_key(), new_key()
    assert (await admit(synced, key)).lease_id == ""
    assert (await admit(synced, other)).lease_id == ""
    await set_budget(nc, key, WORST * 3)
    await within_a_second(synced, key)
    await admit(synced, key)
    await admit(synced, key)
    with pytest.raises(BudgetExceeded):
        await admit(synced, key)
    assert (await admit(synced, other)).lease_id == ""  # another project's cache is kept


async def test_a_raised_budget_or_a_top_up_admits_at_once_despite_a_cached_refusal(
    synced: BudgetGate, nc: Client
) -> None:
    key = new_key()
    await set_budget(nc, key, WORST / 2, scope="key")
    with pytest.raises(BudgetExceeded):
        await admit(synced, key)
    await set_budget(nc, key, WORST * 2, scope="key")
    await within_a_second(synced, key)

    broke = new_key()
    topup = wire.CreditsTopUp(project_id=broke.project_id, topup_id="t1", amount=WORST / 2)
    await ask(nc, subjects.BILLING_CREDITS_TOPUP, topup)
    with pytest.raises(CreditsExhausted):
        await admit(synced, broke)
    topup = wire.CreditsTopUp(project_id=broke.project_id, topup_id="t2", amount=WORST * 2)
    await ask(nc, subjects.BILLING_CREDITS_TOPUP, topup)
    await within_a_second(synced, broke)


async def test_a_lowered_budget_stops_the_outstanding_lease(synced: BudgetGate, nc: Client) -> None:
    """The lease of 10 worst cases stops admitting, is released with what it admitted, and
    the lowered budget admits only what it still covers."""
    key = new_key()
    await set_budget(nc, key, WORST * 100)
    releases = await observe(nc, subjects.BILLING_BUDGET_RELEASE)
    first = await admit(synced, key)
    first.record(types_pb2.Usage(prompt_tokens=1, completion_tokens=1))
    first.close()
    in_flight = await admit(synced, key)
    await set_budget(nc, key, WORST * 3)

    async def retired() -> bool:
        return not synced._accounts[(key.project_id, key.key_id, "")].lease

    await eventually(retired, within=1.0)
    in_flight.close()  # the whole reservation: it may have been billed

    async def released() -> bool:
        return len(releases) == 1

    await eventually(released)
    release = wire.LeaseRelease.model_validate_json(releases[0])
    assert release.lease_id == first.lease_id
    assert release.consumed == Decimal("0.000003") + WORST
    # 3 worst cases minus what the first lease still holds (nothing is billed here).
    assert (await admit(synced, key)).lease_id not in ("", first.lease_id)
    with pytest.raises(BudgetExceeded):
        await admit(synced, key)


async def test_a_key_change_keeps_the_other_keys_leases(synced: BudgetGate, nc: Client) -> None:
    key = new_key()
    sibling = KeyEntry(key_id=uuid.uuid4().hex, project_id=key.project_id, scopes=frozenset())
    await set_budget(nc, key, WORST * 100)
    held = (await admit(synced, sibling)).lease_id
    old = (await admit(synced, key)).lease_id
    await set_budget(nc, key, WORST * 50, scope="key")
    await within_a_second(synced, key, not_under=old)
    assert (await admit(synced, sibling)).lease_id == held


async def test_an_answer_to_a_lease_request_sent_before_a_change_is_not_used(
    gate: BudgetGate, nc: Client
) -> None:
    key = new_key()
    await set_budget(nc, key, WORST * 100)
    leases = await observe(nc, subjects.BILLING_BUDGET_LEASE)
    releases = await observe(nc, subjects.BILLING_BUDGET_RELEASE)
    pending = asyncio.create_task(admit(gate, key))
    for _ in range(3):  # the lease request is on its way; billing cannot have answered yet
        await asyncio.sleep(0)
    assert gate.forget(key.project_id) == 1
    ticket = await pending
    assert len(leases) == 2

    async def released() -> bool:
        return len(releases) == 1

    await eventually(released)
    stale = wire.LeaseRelease.model_validate_json(releases[0])
    assert stale.consumed == 0 and stale.lease_id not in ("", ticket.lease_id)
    assert ticket.lease_id


async def test_a_change_during_a_lease_request_does_not_refuse_what_fits(
    gate: BudgetGate, nc: Client
) -> None:
    """The discarded answer's grant holds the whole budget at billing until it is released:
    the next lease request waits for that release, or it would be refused (a real flake)."""
    key = new_key()
    await set_budget(nc, key, WORST * 2)
    pending = asyncio.create_task(admit(gate, key))
    for _ in range(3):  # the lease request is on its way; billing cannot have answered yet
        await asyncio.sleep(0)
    assert gate.forget(key.project_id) == 1
    ticket = await pending
    assert ticket.lease_id


async def test_an_unreadable_announcement_drops_every_account(
    synced: BudgetGate, nc: Client
) -> None:
    key = new_key()
    leases = await observe(nc, subjects.BILLING_BUDGET_LEASE)
    await admit(synced, key)
    await nc.publish(subjects.BILLING_BUDGETS_CHANGED, b'{"schema_version": 2}')

    async def asked_again() -> bool:
        await admit(synced, key)
        return len(leases) == 2

    await eventually(asked_again, within=1.0)


# -- refusals that say what would fit ------------------------------------------------------


def test_the_largest_max_tokens_within_a_budget(prices: PriceBook) -> None:
    estimate = prices.estimate(CHAT, "chat", BODY, max_output_tokens=None, choices=2)
    assert estimate is not None
    assert (estimate.output_tokens, estimate.output_unset) == (300, True)
    prompt = Decimal("0.000001") * len(BODY)
    assert estimate.max_output_within(prompt + Decimal("0.000004") * 120) == 120
    assert (
        estimate.max_output_within(prompt + Decimal("0.000004") * 120 - 1 / Decimal(10**9)) == 119
    )
    assert estimate.max_output_within(prompt + Decimal("0.000003")) is None
    capped = prices.estimate(CHAT, "chat", BODY, max_output_tokens=10, choices=1)
    assert capped is not None and not capped.output_unset


async def test_a_refused_worst_case_says_which_max_tokens_would_fit(
    gate: BudgetGate, nc: Client
) -> None:
    key = new_key()
    prompt = Decimal("0.000001") * len(BODY)
    limit = prompt + Decimal("0.000002") * 120
    await set_budget(nc, key, limit)
    with pytest.raises(BudgetExceeded) as refused:
        await admit(gate, key, max_tokens=None)
    worst = prompt + Decimal("0.000002") * 300
    assert refused.value.message == (
        "You exceeded your current quota: the project's monthly budget cannot cover this "
        "request. This request's worst case (no max_tokens: the model's 300 output tokens "
        f"reserved) costs ${worst}, more than the ${limit} left; a request with max_tokens "
        "of at most 120 would fit."
    )
    with pytest.raises(BudgetExceeded) as capped:
        await admit(gate, key, max_tokens=121)
    assert capped.value.message.endswith("cannot cover this request.")
    assert (await admit(gate, key, max_tokens=120)).lease_id


async def test_credits_too_low_for_the_worst_case_say_so_too(gate: BudgetGate, nc: Client) -> None:
    key = new_key()
    prompt = Decimal("0.000001") * len(BODY)
    topup = wire.CreditsTopUp(
        project_id=key.project_id, topup_id="t", amount=prompt + Decimal("0.000002") * 100
    )
    await ask(nc, subjects.BILLING_CREDITS_TOPUP, topup)
    with pytest.raises(CreditsExhausted) as refused:
        await admit(gate, key, max_tokens=None)
    assert refused.value.message.startswith("Credits exhausted. This request's worst case")
    assert refused.value.message.endswith("a request with max_tokens of at most 100 would fit.")
