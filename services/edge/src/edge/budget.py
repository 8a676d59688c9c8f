"""Budget and credit admission at the edge: leased slices of a budget, no database trip per request.

Per routed request, after authentication and the body checks and before the
router is called (seed 001: auth -> rate limit -> budget -> ...)::

    ticket = await gate.admit(key, op, model, body, ...)   # or 429 / 403 / 503
    router call carrying ticket.lease_id (CompleteRequest.budget_lease_id)
    ticket.record(usage)       when the router reports the call's usage
    ticket.close(error)        when the request ends, however it ends

**Accounts.** The gate keeps one account per (project, key, endpoint), in memory
(the endpoint is the Gateway API endpoint's id, "" for ``/v1``; its lease is
bound by the endpoint's ``monthly_budget`` too, see ``billing.store.budgets``):

    unlimited until T   billing said no budget or credits apply: admit at no cost
    current lease L     admits a request whose worst case is w (``edge.pricebook``) if
                        available(L) = granted - reserved - settled >= w, reserving w
    refusal (w0, T)     billing granted nothing with min w0: a request of w >= w0 is
                        refused locally until T (``refusal_ttl_s``), so an exhausted
                        project does not send every request on to billing

When the current lease cannot admit (too little left, or past its
``expires_at``), one request asks billing for a new one (want: ``lease_multiple``
worst cases, at least ``lease_slice``; min: its own worst case) and every
concurrent request of the account waits for that same answer: one lease
request per account at a time, never a stampede. Only that path touches NATS;
billing's answer is committed before it is sent, so the sum of what all
edges hold never exceeds what remains (the invariant of ``billing.store.budgets``).

**Settlement.** ``close`` moves the request's reservation to ``settled`` at
its cost: its usage priced as billing prices it when the router reported it;
nothing when the router answered with an error of its own (no call it made
returned usage, so none was billed); the whole reservation otherwise
(cancelled, timed out, the router unreachable, a stream cut short): the
router may have billed what the edge never saw, and over-reporting only
holds budget until billing's reaper, while under-reporting could let a
later grant overrun. A replaced or expired lease is released
(``billing.budget.release.v1`` with ``consumed`` = settled) once no request
admitted under it is in flight; a sweeper closes tickets whose request
vanished (older than ``ticket_timeout_s``) at their full reservation,
releases expired leases of idle accounts and forgets idle accounts. On
shutdown every lease is released.

**Changes of a limit.** On billing's announcement (``edge.budgetsync``)
``forget`` drops an account's state: the lease stops admitting (released once
its requests end), "unlimited" and the refusal are forgotten, and a lease
request already on its way has its answer released unused (the account's
``generation`` moved on) and is asked again once that release is answered. The
next request renews, after the retired lease's release has been answered, so
billing grants against holds already shrunk (an unreleased grant could hold the
whole remaining budget and refuse a request that fits).

**Refusals** name the limit that refused; when the request set no cap and a
smaller one would fit what billing said remained, they say which
(``Estimate.max_output_within``).

**Billing unreachable** (no answer within ``BillingClient``'s timeout):
fail open only for an account last seen unlimited (admitted free for
``fail_open_s`` more, then billing is asked again), closed for every other
(503): a project with a budget, or one this edge has not seen, is never
admitted without a grant. Budgets set while billing is down are enforced
once it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common.billing_api import Lease, LeaseRelease, LeaseRequest, LimitedBy
from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    ProviderTimeout,
    ServiceUnavailable,
)
from gateway_common.pricing import PricingError, decimal_text, exact_sum

from .auth import KeyEntry
from .budget_client import BillingClient, BillingUnavailable
from .pricebook import Estimate, PriceBook

__all__ = ["BudgetGate", "BudgetPolicy", "Ticket"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_ZERO = Decimal(0)
#: An account with nothing live is forgotten after this long unused.
_FORGET_AFTER_S = 600.0
#: Floor of a lease's local lifetime, should the clocks of edge and billing disagree.
_MIN_TTL_S = 1.0


#: Whose monthly budget refused, in a refusal's message.
_WHOSE: dict[str, str] = {"key_budget": "this API key's", "endpoint_budget": "this endpoint's"}


def _refusal(refused: _Refusal, estimate: Estimate) -> GatewayError:
    """The refusal of a request whose worst case ``estimate`` billing could not grant.

    When the request set no max tokens and a cap within what is left would
    fit, the message says so (the caller can retry with that cap).
    """
    hint = _worst_case_hint(refused, estimate)
    if refused.limited_by == "credits":
        return CreditsExhausted(f"Credits exhausted.{hint}")
    whose = _WHOSE.get(refused.limited_by, "the project's")
    return BudgetExceeded(
        f"You exceeded your current quota: {whose} monthly budget cannot cover this request." + hint
    )


def _worst_case_hint(refused: _Refusal, estimate: Estimate) -> str:
    if not estimate.output_unset or refused.remaining is None:
        return ""
    fits = estimate.max_output_within(refused.remaining)
    if fits is None:
        return ""
    cap = "max_output_tokens" if estimate.operation == "responses" else "max_tokens"
    return (
        f" This request's worst case (no {cap}: the model's {estimate.output_tokens:,} "
        f"output tokens reserved) costs ${decimal_text(estimate.amount)}, more than the "
        f"${decimal_text(refused.remaining)} left; a request with {cap} of at most {fits:,} "
        "would fit."
    )


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """How the gate leases (see the module docstring; fields come from ``EdgeSettings``)."""

    lease_multiple: int = 10
    lease_slice: Decimal = _ZERO
    refusal_ttl_s: float = 1.0
    fail_open_s: float = 30.0
    ticket_timeout_s: float = 330.0
    sweep_interval_s: float = 5.0


@dataclass(eq=False, slots=True)
class _Lease:
    lease_id: str
    granted: Decimal
    expires: float  # on the gate's monotonic clock
    reserved: Decimal = _ZERO
    settled: Decimal = _ZERO
    tickets: set[Ticket] = field(default_factory=set)
    admitting: bool = True

    def available(self) -> Decimal:
        return exact_sum((self.granted, -self.reserved, -self.settled))


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Billing granted nothing to a lease request whose min was ``amount``; ``remaining``
    is what billing said was left of the ``limited_by`` limit (None: not said)."""

    amount: Decimal
    limited_by: LimitedBy
    remaining: Decimal | None = None


@dataclass(eq=False, slots=True)
class _Account:
    project_id: str
    api_key_id: str
    endpoint_id: str
    used: float
    lease: _Lease | None = None
    unlimited_until: float | None = None  # kept once past: "last seen unlimited"
    refused: _Refusal | None = None
    refused_until: float = 0.0
    pending: asyncio.Task[_Refusal | None] | None = None
    #: Bumped by ``forget``: an answer to a lease request sent before it is stale.
    generation: int = 0
    #: The release of the lease ``forget`` retired, awaited before asking for a new one.
    releasing: asyncio.Task[None] | None = None


class Ticket:
    """One admitted request's reservation; ``close`` it exactly once when the request ends.

    A ticket without a lease (``lease_id`` "") is free: unlimited account or
    unpriced model. Usable as ``with ticket:`` (closes with the exception).
    """

    __slots__ = ("_closed", "_deadline", "_estimate", "_gate", "_lease", "_usage", "lease_id")

    def __init__(
        self,
        gate: BudgetGate | None = None,
        lease: _Lease | None = None,
        estimate: Estimate | None = None,
        deadline: float = 0.0,
    ) -> None:
        self.lease_id = "" if lease is None else lease.lease_id
        self._gate = gate
        self._lease = lease
        self._estimate = estimate
        self._deadline = deadline
        self._usage: types_pb2.Usage | None = None
        self._closed = False

    @property
    def reserved(self) -> Decimal:
        """The worst case reserved for this request (0 when free)."""
        return _ZERO if self._estimate is None or self._lease is None else self._estimate.amount

    def record(self, usage: types_pb2.Usage) -> None:
        """The usage the router reported for the call (its cost is settled at ``close``)."""
        self._usage = usage

    def release(self) -> None:
        """Give the reservation back at no cost (``BudgetGate.check``: no call was made)."""
        if self._closed or self._gate is None or self._lease is None:
            return
        self._closed = True
        self._gate._settle(self, self._lease, _ZERO)

    def close(self, error: BaseException | None = None) -> None:
        """Settle the request (see "Settlement" in the module docstring); later calls do nothing."""
        if self._closed or self._gate is None or self._lease is None:
            return
        self._closed = True
        self._gate._settle(self, self._lease, self._cost(error))

    def _cost(self, error: BaseException | None) -> Decimal:
        assert self._gate is not None and self._estimate is not None
        if self._usage is not None:
            try:
                return self._gate._prices.cost(self._estimate, self._usage)
            except PricingError as exc:
                log.warning("cannot price usage of lease %s: %s", self.lease_id, exc)
                return self.reserved
        if isinstance(error, GatewayError) and not isinstance(
            error, ServiceUnavailable | ProviderTimeout
        ):
            return _ZERO
        return self.reserved

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close(error)


class BudgetGate:
    """Admits requests against leased budget slices (see the module docstring)."""

    def __init__(
        self,
        billing: BillingClient,
        prices: PriceBook,
        *,
        edge_id: str,
        policy: BudgetPolicy,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._billing = billing
        self._prices = prices
        self._edge_id = edge_id
        self._policy = policy
        self._clock = clock
        self._wall = wall
        self._accounts: dict[tuple[str, str, str], _Account] = {}
        self._draining: set[_Lease] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BudgetGate:
        self._sweeper = asyncio.create_task(self._sweep_forever())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def admit(
        self,
        key: KeyEntry,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        *,
        max_output_tokens: int | None = None,
        choices: int = 1,
        endpoint_id: str = "",
    ) -> Ticket:
        """A ticket for one request, or ``BudgetExceeded`` / ``CreditsExhausted`` /
        ``ServiceUnavailable`` (billing unreachable, see the module docstring).

        ``max_output_tokens`` is the request's completion cap per choice (None:
        unset), ``choices`` its ``n``, ``endpoint_id`` the Gateway API endpoint
        the call came through ("" for none: no endpoint budget applies). A model
        the catalog does not know is admitted free: the router answers it with 404.
        """
        now = self._clock()
        name = (key.project_id, key.key_id, endpoint_id)
        account = self._accounts.get(name)
        if account is None:
            account = _Account(key.project_id, key.key_id, endpoint_id, now)
            self._accounts[name] = account
        account.used = now
        if account.unlimited_until is not None and now < account.unlimited_until:
            return Ticket()
        estimate = self._prices.estimate(
            op, model, body, max_output_tokens=max_output_tokens, choices=choices
        )
        if estimate is None or estimate.amount <= _ZERO:
            return Ticket()
        while True:
            now = self._clock()
            if account.unlimited_until is not None and now < account.unlimited_until:
                return Ticket()
            lease = account.lease
            if lease is not None and now >= lease.expires:
                self._retire(account)
            elif lease is not None and lease.available() >= estimate.amount:
                return self._reserve(lease, estimate, now)
            refused = account.refused
            if refused and now < account.refused_until and estimate.amount >= refused.amount:
                raise _refusal(refused, estimate)
            if account.pending is None or account.pending.done():
                account.pending = self._spawn(self._renew(account, estimate.amount))
            try:
                refused = await asyncio.shield(account.pending)
            except BillingUnavailable:
                raise ServiceUnavailable(
                    "The budget service is not answering; the request was not admitted. "
                    "Please retry."
                ) from None
            if refused is not None and estimate.amount >= refused.amount:
                raise _refusal(refused, estimate)

    async def check(
        self,
        key: KeyEntry,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        *,
        max_output_tokens: int | None = None,
        endpoint_id: str = "",
    ) -> None:
        """Refuse now what ``admit`` would refuse, reserving nothing (seed 001's budget step).

        The Gateway API's pipeline runs its budget step before the guardrails, but the
        exact body (system prompt, template, history) is only known after the prompt
        step, where ``Proxy.forward`` admits it for real. So this admits an estimate
        of the body and gives it back at once: an exhausted budget is refused before
        any guardrail or schema runs, and the real admission stays the one that counts.
        """
        ticket = await self.admit(
            key, op, model, body, max_output_tokens=max_output_tokens, endpoint_id=endpoint_id
        )
        ticket.release()

    def _reserve(self, lease: _Lease, estimate: Estimate, now: float) -> Ticket:
        ticket = Ticket(self, lease, estimate, now + self._policy.ticket_timeout_s)
        lease.reserved = exact_sum((lease.reserved, estimate.amount))
        lease.tickets.add(ticket)
        return ticket

    def _settle(self, ticket: Ticket, lease: _Lease, cost: Decimal) -> None:
        lease.tickets.discard(ticket)
        lease.reserved = exact_sum((lease.reserved, -ticket.reserved))
        lease.settled = exact_sum((lease.settled, cost))
        if not lease.admitting and not lease.tickets:
            self._draining.discard(lease)
            self._release(lease)

    async def _renew(self, account: _Account, amount: Decimal) -> _Refusal | None:
        """Ask billing for a lease covering at least ``amount`` and apply the answer.

        Returns the refusal when billing granted nothing (a waiter whose worst
        case is at least ``amount`` is refused by it, however short the refusal TTL).
        """
        want = max(amount * self._policy.lease_multiple, self._policy.lease_slice, amount)
        request = LeaseRequest(
            edge_id=self._edge_id,
            project_id=account.project_id,
            api_key_id=account.api_key_id,
            endpoint_id=account.endpoint_id,
            want=want,
            min=amount,
        )
        while True:
            if account.releasing is not None:
                # So billing sees the retired lease's hold shrunk before it grants again.
                await asyncio.shield(account.releasing)
                account.releasing = None
            generation = account.generation
            try:
                answer = await self._billing.lease(request)
            except BillingUnavailable as exc:
                if account.unlimited_until is None:
                    log.warning("no budget lease for %s: %s", account.project_id, exc)
                    raise
                log.warning("billing unreachable (%s); %s stays unlimited", exc, account.project_id)
                account.unlimited_until = self._clock() + self._policy.fail_open_s
                return None
            if generation == account.generation:
                return self._apply(account, answer, amount)
            # The account's limits changed while billing answered: the answer may predate it.
            # Its grant holds budget at billing until released: ask again only after that.
            if answer.lease_id:
                await asyncio.shield(self._release(_Lease(answer.lease_id, answer.granted, 0.0)))

    def _apply(self, account: _Account, answer: Lease, amount: Decimal) -> _Refusal | None:
        now = self._clock()
        expires = now + _MIN_TTL_S
        if answer.expires_at is not None:
            ttl = (answer.expires_at - self._wall()).total_seconds()
            expires = now + max(ttl, _MIN_TTL_S)
        if answer.unlimited:
            self._retire(account)
            account.unlimited_until = expires
            account.refused = None
            return None
        if answer.lease_id and answer.granted > _ZERO:
            self._retire(account)
            account.lease = _Lease(answer.lease_id, answer.granted, expires)
            account.unlimited_until = None
            account.refused = None
            return None
        account.unlimited_until = None
        account.refused = _Refusal(amount, answer.limited_by or "project_budget", answer.remaining)
        account.refused_until = now + self._policy.refusal_ttl_s
        return account.refused

    def _retire(self, account: _Account) -> asyncio.Task[None] | None:
        """Stop admitting under the account's lease; release it once nothing is in flight.

        Returns the release when it was sent now (nothing was in flight).
        """
        lease, account.lease = account.lease, None
        if lease is None:
            return None
        lease.admitting = False
        if lease.tickets:
            self._draining.add(lease)
            return None
        return self._release(lease)

    def forget(
        self, project_id: str, api_key_id: str | None = None, *, endpoint_id: str | None = None
    ) -> int:
        """Drop what the gate cached for the project's accounts (only ``api_key_id``'s, or
        only ``endpoint_id``'s, if given): leases stop admitting and are released,
        "unlimited" and refusals are forgotten, and an answer to a lease request already
        on its way is not used. The next request of such an account asks billing again.
        Returns how many accounts were dropped. Called on ``billing.budgets.changed.v1``
        (``edge.budgetsync``).
        """
        dropped = 0
        for (project, key, endpoint), account in self._accounts.items():
            if project != project_id or (api_key_id is not None and key != api_key_id):
                continue
            if endpoint_id is not None and endpoint != endpoint_id:
                continue
            dropped += 1
            account.generation += 1
            account.unlimited_until = None
            account.refused = None
            account.refused_until = 0.0
            release = self._retire(account)
            if release is not None:
                account.releasing = release
        return dropped

    def forget_all(self) -> None:
        """``forget`` every account (an announcement that cannot be read)."""
        for project in {project for project, _, _ in self._accounts}:
            self.forget(project)

    def _release(self, lease: _Lease) -> asyncio.Task[None]:
        return self._spawn(self._send_release(lease))

    async def _send_release(self, lease: _Lease) -> None:
        try:
            await self._billing.release(
                LeaseRelease(lease_id=lease.lease_id, consumed=lease.settled)
            )
        except BillingUnavailable as exc:
            # Safe: billing keeps holding the lease until its reaper closes it.
            log.warning("lease %s not released (%s); billing's reaper will", lease.lease_id, exc)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap_task)
        return task

    def _reap_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: waiters (if any) got it already; it is logged in _renew

    def sweep(self) -> None:
        """One sweeper pass: vanished requests, expired leases, idle accounts."""
        now = self._clock()
        for lease in [*self._draining, *(a.lease for a in self._accounts.values() if a.lease)]:
            for ticket in [t for t in lease.tickets if t._deadline <= now]:
                log.warning(
                    "request under lease %s vanished; charging its reservation", lease.lease_id
                )
                ticket.close()
        for key, account in list(self._accounts.items()):
            if account.lease is not None and now >= account.lease.expires:
                self._retire(account)
            idle = account.lease is None and (account.pending is None or account.pending.done())
            if idle and now - account.used > _FORGET_AFTER_S:
                del self._accounts[key]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._policy.sweep_interval_s)
            self.sweep()

    async def aclose(self) -> None:
        """Stop the sweeper, settle what is left at its reservation, release every lease."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for account in self._accounts.values():
            if account.pending is not None:
                account.pending.cancel()
            self._retire(account)
        for lease in list(self._draining):
            for ticket in list(lease.tickets):
                ticket.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
