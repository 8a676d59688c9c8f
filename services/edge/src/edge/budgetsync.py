"""Keeps the budget gate's cache current: ``billing.budgets.changed.v1`` drops an account's state.

Billing announces every committed change of a budget or of credits
(``gateway_common.billing_api.BudgetsChanged``, published before billing
answers the change, so it reaches every edge about as soon as the admin call
returns). On each one the gate forgets what it cached for the account
(``BudgetGate.forget``): its leases stop admitting and are released, its
"unlimited" answer and its refusals are dropped, and the next request asks
billing again, under the new limit. So a budget or credits set, raised or
lowered binds every edge within a NATS delivery, well inside 1 s.

    project  -> every account (key) of the project
    key      -> that key's account
    endpoint -> the accounts (any key) of calls through that endpoint
    unreadable announcement -> every account

Core NATS, no replay: a message this edge missed (disconnected at that moment)
is bounded by what the gate caches, a lease's or an "unlimited" answer's TTL.
The callback only changes memory, so announcements are applied in order.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from gateway_common import subjects
from gateway_common.billing_api import BudgetsChanged

from .budget import BudgetGate

__all__ = ["BudgetSync"]

log = logging.getLogger(__name__)


class BudgetSync:
    """Subscribed between ``__aenter__`` and ``__aexit__`` (see the module docstring)."""

    def __init__(self, gate: BudgetGate, nc: Client) -> None:
        self._gate = gate
        self._nc = nc
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Self:
        self._sub = await self._nc.subscribe(subjects.BILLING_BUDGETS_CHANGED, cb=self._on_change)
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_change(self, msg: Msg) -> None:
        try:
            change = BudgetsChanged.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("unreadable budget change (%s); dropping every cached budget state", exc)
            self._gate.forget_all()
            return
        account = change.account
        dropped = self._gate.forget(
            change.project_id,
            account.id if account.kind == "key" else None,
            endpoint_id=account.id if account.kind == "endpoint" else None,
        )
        log.debug(
            "budget change %s of %s %s: %d cached accounts dropped",
            change.change,
            change.account.kind,
            change.account.id,
            dropped,
        )
