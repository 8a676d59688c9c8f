"""Billing's request/reply API over core NATS: leases, budgets, credits, spend and usage reads.

Contract and payloads: ``gateway_common.billing_api``. Every subject is served
in queue group ``billing``, so replicas share the requests; correctness never
depends on which replica answers (a grant is serialized in the database, see
``store.budgets``). Each request runs in its own task (at most
``concurrency`` at once per replica) and its own transaction, and is answered
exactly once, inside a consumer span in the caller's trace (``traceparent`` in the
request's headers; nothing when tracing is off):

    parse ──invalid JSON / fields──▶ status "invalid" (message says which)
      │
    operation (one transaction) ──database error──▶ status "error" (logged)
      │
    announce (a committed budget set/removal or an applied top-up)
      │
    reply (the operation's model; writes are committed before it is sent)

**Announcements.** A committed change of a limit is published on
``billing.budgets.changed.v1`` (``BudgetsChanged``) *before* the reply, so
an admin call that returns has already been announced to every edge: one
connection's messages reach the server in order. Core NATS, not JetStream:
every edge is subscribed while it runs, and one that misses a message is
bounded by the lease TTL (see ``store.budgets``, "Changing a limit"). A
failed publish is logged; the change stays committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import billing_api as wire
from gateway_common import subjects, telemetry

from .metrics import BillingMetrics
from .store import budgets, reports

__all__ = ["BillingApi"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_Operation = Callable[[AsyncSession, Any, datetime], Awaitable[wire.Reply]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BillingApi:
    """Serves the ``billing.*`` request subjects between ``start`` and ``stop``."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        policy: budgets.LeasePolicy,
        metrics: BillingMetrics,
        concurrency: int = 16,
        clock: Clock = _utc_now,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self._nc: Client | None = None
        self._routes: dict[str, tuple[type[BaseModel], type[wire.Reply], _Operation]] = {
            subjects.BILLING_BUDGET_LEASE: (
                wire.LeaseRequest,
                wire.Lease,
                lambda s, r, now: budgets.grant_lease(session=s, request=r, policy=policy, now=now),
            ),
            subjects.BILLING_BUDGET_RELEASE: (
                wire.LeaseRelease,
                wire.Ack,
                lambda s, r, now: budgets.release_lease(session=s, request=r, now=now),
            ),
            subjects.BILLING_BUDGET_SET: (
                wire.BudgetSet,
                wire.Ack,
                lambda s, r, now: budgets.set_budget(session=s, request=r, now=now),
            ),
            subjects.BILLING_CREDITS_TOPUP: (
                wire.CreditsTopUp,
                wire.CreditsReport,
                lambda s, r, now: budgets.top_up(session=s, request=r, now=now),
            ),
            subjects.BILLING_SPEND_GET: (
                wire.SpendQuery,
                wire.SpendReport,
                lambda s, r, now: budgets.spend_report(session=s, query=r, policy=policy, now=now),
            ),
            subjects.BILLING_USAGE_QUERY: (
                wire.UsageQuery,
                wire.UsageReport,
                lambda s, r, _now: reports.usage_report(session=s, query=r),
            ),
            subjects.BILLING_REQUEST_GET: (
                wire.RequestQuery,
                wire.RequestReport,
                lambda s, r, _now: reports.request_report(session=s, query=r),
            ),
        }

    async def start(self, nc: Client) -> None:
        """Subscribe to every subject (queue group ``billing``); announce changes on ``nc``."""
        self._nc = nc
        for subject in self._routes:

            async def on_message(msg: Msg, subject: str = subject) -> None:
                await self._slots.acquire()  # back-pressure: excess waits in the subscription
                task = asyncio.create_task(self._answer(subject, msg))
                self._tasks.add(task)
                task.add_done_callback(self._done)

            self._subscriptions.append(
                await nc.subscribe(subject, queue=subjects.BILLING_QUEUE, cb=on_message)
            )

    async def stop(self) -> None:
        """Stop taking requests and finish (and answer) the ones in progress."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, subject: str, msg: Msg) -> None:
        with telemetry.consumer_span(msg, "process"):
            await self._answer_in_span(subject, msg)

    async def _answer_in_span(self, subject: str, msg: Msg) -> None:
        request_type, reply_type, operation = self._routes[subject]
        try:
            request = request_type.model_validate_json(msg.data)
        except ValidationError as exc:
            reply = reply_type(status="invalid", message=_first_error(exc))
        else:
            try:
                async with self._sessions() as session:
                    reply = await operation(session, request, self._clock())
            except (sa_exc.SQLAlchemyError, OSError) as exc:
                log.warning("%s failed: %s", subject, exc)
                reply = reply_type(status="error", message="billing storage unavailable")
            except Exception:  # a bug must still get an answer, not a caller's timeout
                log.exception("%s failed unexpectedly", subject)
                reply = reply_type(status="error", message="internal error")
            else:
                await self._announce(_change_of(request, reply))
        self._metrics.requests.labels(subject, reply.status).inc()
        if msg.reply:
            await msg.respond(reply.to_bytes())

    async def _announce(self, change: wire.BudgetsChanged | None) -> None:
        if change is None or self._nc is None:
            return
        try:
            await self._nc.publish(subjects.BILLING_BUDGETS_CHANGED, change.to_bytes())
        except nats.errors.Error as exc:
            log.warning("budget change of %s not announced: %s", change.project_id, exc)


def _change_of(request: BaseModel, reply: wire.Reply) -> wire.BudgetsChanged | None:
    """The announcement a committed operation calls for, if any."""
    if reply.status != "ok":
        return None
    if isinstance(request, wire.BudgetSet):
        account = wire.BudgetAccount(kind=request.scope, id=request.scope_id)
        change: wire.BudgetChange = "budget_removed" if request.limit is None else "budget_set"
        return wire.BudgetsChanged(project_id=request.project_id, account=account, change=change)
    if isinstance(request, wire.CreditsTopUp) and isinstance(reply, wire.CreditsReport):
        if not reply.applied:
            return None
        return wire.BudgetsChanged(
            project_id=request.project_id,
            account=wire.BudgetAccount(kind="project", id=request.project_id),
            change="credits_added",
        )
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
