"""The admin API's client of billing's request/reply API (``gateway_common.billing_api``).

Budgets, credits, spend, usage and one request's cost live in billing; the
edge reaches them only over NATS, each call with a deadline (``timeout_s``).
Outcomes, mapped once here:

    reply "ok"                                     -> the reply
    reply "not_found"                              -> the reply (the route decides: 404)
    reply "invalid"                                -> InvalidRequest (400) with billing's reason
    reply "error", no responder, no reply in time,
    NATS trouble, an unreadable reply              -> ServiceUnavailable (503)
"""

from __future__ import annotations

import logging
from typing import Final, Protocol, TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from pydantic import ValidationError

from gateway_common import billing_api as wire
from gateway_common import subjects, telemetry
from gateway_common.errors import InvalidRequest, ServiceUnavailable

__all__ = ["BILLING_UNAVAILABLE", "BillingAdmin"]

log = logging.getLogger(__name__)

#: The message of every 503 that means "billing did not answer".
BILLING_UNAVAILABLE: Final = "Billing is unavailable. Please retry."

R = TypeVar("R", bound=wire.Reply)


class _Payload(Protocol):
    def to_bytes(self) -> bytes: ...


class BillingAdmin:
    """Billing's admin-side operations over one NATS connection."""

    def __init__(self, nc: Client, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout_s

    async def set_budget(self, request: wire.BudgetSet) -> wire.Ack:
        """Set or (``limit`` None) delete a budget."""
        return await self._call(subjects.BILLING_BUDGET_SET, request, wire.Ack)

    async def top_up(self, request: wire.CreditsTopUp) -> wire.CreditsReport:
        """Add prepaid credits (a repeated ``topup_id`` is applied once)."""
        return await self._call(subjects.BILLING_CREDITS_TOPUP, request, wire.CreditsReport)

    async def spend(self, query: wire.SpendQuery) -> wire.SpendReport:
        """Spend, budgets and credits of a project (and key) in one month."""
        return await self._call(subjects.BILLING_SPEND_GET, query, wire.SpendReport)

    async def usage(self, query: wire.UsageQuery) -> wire.UsageReport:
        """Usage and cost in a time range, grouped."""
        return await self._call(subjects.BILLING_USAGE_QUERY, query, wire.UsageReport)

    async def request(self, query: wire.RequestQuery) -> wire.RequestReport:
        """One request's ledger entries; status ``not_found`` when not this project's."""
        return await self._call(subjects.BILLING_REQUEST_GET, query, wire.RequestReport)

    async def _call(self, subject: str, request: _Payload, reply_type: type[R]) -> R:
        try:
            msg = await self._nc.request(
                subject, request.to_bytes(), timeout=self._timeout, headers=telemetry.inject()
            )
            reply = reply_type.model_validate_json(msg.data)
        except (NatsError, TimeoutError, ValidationError) as exc:
            log.warning("billing request on %s failed: %r", subject, exc)
            raise ServiceUnavailable(BILLING_UNAVAILABLE, code="billing_unavailable") from exc
        if reply.status == "error":
            log.warning("billing could not answer %s: %s", subject, reply.message)
            raise ServiceUnavailable(BILLING_UNAVAILABLE, code="billing_unavailable")
        if reply.status == "invalid":
            raise InvalidRequest(reply.message or "Billing refused the request.")
        return reply
