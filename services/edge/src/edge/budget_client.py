"""The edge's client of billing's lease subjects (payloads: ``gateway_common.billing_api``).

Two calls, each one core-NATS request bounded by ``timeout_s``::

    lease(LeaseRequest)     -> Lease    billing.budget.lease.v1
    release(LeaseRelease)   -> Ack      billing.budget.release.v1 (not_found is fine)

Each request carries the caller's W3C ``traceparent`` (``telemetry.inject``), so
billing's handling span joins the request's trace. Anything but a usable answer (no responder, timeout, a closed connection, a
reply that does not parse, status ``error`` or ``invalid``) raises
``BillingUnavailable``; what to do then is the caller's policy
(``edge.budget``).
"""

from __future__ import annotations

from typing import TypeVar

import nats.errors
from nats.aio.client import Client
from pydantic import ValidationError

from gateway_common import subjects, telemetry
from gateway_common.billing_api import Ack, Lease, LeaseRelease, LeaseRequest, Reply

__all__ = ["BillingClient", "BillingUnavailable"]

R = TypeVar("R", bound=Reply)


class BillingUnavailable(Exception):
    """Billing gave no usable answer in time; the message says why (never user-facing)."""


class BillingClient:
    """Requests to billing over the edge's NATS connection."""

    def __init__(self, nc: Client, *, timeout_s: float) -> None:
        self._nc = nc
        self._timeout = timeout_s

    async def lease(self, request: LeaseRequest) -> Lease:
        """Ask for a lease; the answer may grant nothing (``granted`` 0, ``limited_by``)."""
        return await self._ask(subjects.BILLING_BUDGET_LEASE, request.to_bytes(), Lease, ())

    async def release(self, request: LeaseRelease) -> Ack:
        """Close a lease, reporting what its requests cost; an already closed one is fine."""
        return await self._ask(
            subjects.BILLING_BUDGET_RELEASE, request.to_bytes(), Ack, ("not_found",)
        )

    async def _ask(
        self, subject: str, payload: bytes, reply_type: type[R], tolerated: tuple[str, ...]
    ) -> R:
        try:
            msg = await self._nc.request(
                subject, payload, timeout=self._timeout, headers=telemetry.inject()
            )
            reply = reply_type.model_validate_json(msg.data)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BillingUnavailable(f"{subject}: {type(exc).__name__} {exc}") from exc
        except ValidationError as exc:
            raise BillingUnavailable(f"{subject}: unreadable reply: {exc}") from exc
        if reply.status != "ok" and reply.status not in tolerated:
            raise BillingUnavailable(f"{subject}: {reply.status}: {reply.message}")
        return reply
