"""The request/reply contract of billing over core NATS (subjects in ``gateway_common.subjects``).

Billing owns budgets, credits, leases and the ledger; the edge and the admin
API reach them only through these messages (JSON bodies of the models below;
money is always a decimal *string*, e.g. ``"0.0000207"``, never a JSON float):

    BILLING_BUDGET_LEASE    LeaseRequest   -> Lease
    BILLING_BUDGET_RELEASE  LeaseRelease   -> Ack         (not_found: unknown or closed lease)
    BILLING_BUDGET_SET      BudgetSet      -> Ack         (a ``None`` limit deletes the budget)
    BILLING_CREDITS_TOPUP   CreditsTopUp   -> CreditsReport   (idempotent by ``topup_id``)
    BILLING_SPEND_GET       SpendQuery     -> SpendReport
    BILLING_USAGE_QUERY     UsageQuery     -> UsageReport
    BILLING_REQUEST_GET     RequestQuery   -> RequestReport   (not_found: none, or another project's)

Announcements (core NATS publish, no reply; every edge subscribes):

    BILLING_BUDGETS_CHANGED  BudgetsChanged   after a committed budget set/removal or
                             an applied top-up; an edge drops what it cached for the account

Every reply has ``status`` (``ok``, ``not_found``, ``invalid`` for a request
billing refuses, naming why in ``message``; ``error`` when billing could not
do it, e.g. its database failed: treat it like no answer) and ``message``.

Leases (the admission protocol; the invariant is in ``billing.store.budgets``):
an edge asks for ``want`` of a project's (and key's) remaining budget and
admits requests locally against what it was granted, with no round trip per
request. It tags each request's usage with the ``lease_id`` (the router puts
it in ``UsageRecorded.budget_lease_id``), stops admitting under a lease at its
``expires_at``, takes a new lease when the old one runs low or expires, and
releases a lease once no request admitted under it is in flight, reporting
what those requests cost. ``unlimited`` means no budget or credits apply:
admit everything until ``expires_at``, then ask again. When billing
announces a change of an account (``BudgetsChanged``), an edge stops admitting
under its leases of that account, releases them and asks again: that is how a
lowered budget takes back what outstanding leases could still admit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from .pricing import decimal_text

__all__ = [
    "AccountKind",
    "Ack",
    "BudgetAccount",
    "BudgetChange",
    "BudgetScope",
    "BudgetSet",
    "BudgetState",
    "BudgetsChanged",
    "CreditState",
    "CreditsReport",
    "CreditsTopUp",
    "Lease",
    "LeaseRelease",
    "LeaseRequest",
    "LedgerEntryView",
    "LimitedBy",
    "LineItemView",
    "Money",
    "Reply",
    "RequestQuery",
    "RequestReport",
    "SpendQuery",
    "SpendReport",
    "Status",
    "UsageGroup",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
]

#: An exact amount, written as a plain decimal string on the wire.
Money = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
Status = Literal["ok", "not_found", "invalid", "error"]
#: Which limit bounded a lease ("" when none did: the whole ``want`` was granted).
LimitedBy = Literal["", "project_budget", "key_budget", "endpoint_budget", "credits"]
UsageGroup = Literal["key", "model", "day", "endpoint"]
#: Whose limit changed: a project (its budget or its credits), one key, one endpoint.
AccountKind = Literal["project", "key", "endpoint"]
BudgetChange = Literal["budget_set", "budget_removed", "credits_added"]
#: Whose budget a ``BudgetSet`` sets: the project's, one key's, one endpoint's.
BudgetScope = Literal["project", "key", "endpoint"]
_PERIOD = r"^(monthly|\d{4}-(0[1-9]|1[0-2]))$"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_bytes(self) -> bytes:
        """Serialize for a NATS payload (field aliases such as ``from`` applied)."""
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


class Reply(_Message):
    """What every reply carries."""

    status: Status = "ok"
    message: str = Field(default="", description="Why, when the status is not ok.")


class Ack(Reply):
    """The reply to a write that returns nothing else."""


class LeaseRequest(_Message):
    """Reserve up to ``want`` of what remains for ``project_id`` (and ``api_key_id``, and
    ``endpoint_id``): a lease admits only requests of that project, key and endpoint."""

    edge_id: str = Field(min_length=1, description="The asking edge replica (for the reaper).")
    project_id: str = Field(min_length=1)
    api_key_id: str = Field(default="", description="Also bound by this key's budget, if any.")
    endpoint_id: str = Field(
        default="",
        description='Also bound by this Gateway API endpoint\'s budget, if any ("": no endpoint).',
    )
    want: Money = Field(gt=0, description="Amount the edge would like to admit against.")
    min: Money = Field(
        default=Decimal(0), ge=0, description="Grant nothing unless at least this much remains."
    )

    @model_validator(mode="after")
    def _min_le_want(self) -> LeaseRequest:
        if self.min > self.want:
            raise ValueError("min must not exceed want")
        return self


class Lease(Reply):
    """A grant: the edge may admit requests costing up to ``granted`` until ``expires_at``."""

    lease_id: str = Field(default="", description="Empty when nothing was granted or unlimited.")
    granted: Money = Decimal(0)
    expires_at: datetime | None = None
    unlimited: bool = Field(default=False, description="No budget or credits apply.")
    limited_by: LimitedBy = ""
    remaining: Money | None = Field(
        default=None,
        description="When nothing was granted: what remained of the ``limited_by`` limit "
        "(never below 0), so the edge can say what would still fit.",
    )


class LeaseRelease(_Message):
    """Close a lease: no request admitted under it is still in flight."""

    lease_id: str
    consumed: Money = Field(ge=0, description="What the requests admitted under it cost.")


class BudgetSet(_Message):
    """Set (or, with ``limit`` None, delete) a budget of a project, one of its keys or one of
    its Gateway API endpoints (the edge sets an endpoint's ``monthly_budget`` this way)."""

    project_id: str = Field(min_length=1)
    scope: BudgetScope = "project"
    api_key_id: str = Field(default="", description="Required for scope key.")
    endpoint_id: str = Field(default="", description="Required for scope endpoint.")
    period: str = Field(
        default="monthly", pattern=_PERIOD, description="'monthly' (every month) or one 'YYYY-MM'."
    )
    limit: Money | None = Field(ge=0)

    @model_validator(mode="after")
    def _key_scope(self) -> BudgetSet:
        if (self.scope == "key") != bool(self.api_key_id):
            raise ValueError("api_key_id is required for scope key and only for it")
        if (self.scope == "endpoint") != bool(self.endpoint_id):
            raise ValueError("endpoint_id is required for scope endpoint and only for it")
        return self

    @property
    def scope_id(self) -> str:
        """The id of the budget's account: the project's, the key's or the endpoint's."""
        if self.scope == "key":
            return self.api_key_id
        if self.scope == "endpoint":
            return self.endpoint_id
        return self.project_id


class BudgetAccount(_Message):
    """One account whose limit applies to requests: ``id`` is the project, key or endpoint id."""

    kind: AccountKind
    id: str = Field(min_length=1)


class BudgetsChanged(_Message):
    """Billing committed a change of ``account``'s budget or credits (published after the commit).

    An edge drops everything it cached for the account (for a project or an
    endpoint: for every key of the project) and asks billing again at the next
    request; one that cannot read an announcement drops everything it cached.
    """

    schema_version: Literal[1] = 1
    project_id: str = Field(min_length=1)
    account: BudgetAccount
    change: BudgetChange


class CreditsTopUp(_Message):
    """Add ``amount`` of prepaid credits; a repeated ``topup_id`` is applied once."""

    project_id: str = Field(min_length=1)
    topup_id: str = Field(min_length=1, description="Client-chosen idempotency key.")
    amount: Money = Field(gt=0)
    note: str = ""


class CreditsReport(Reply):
    """The balance after a top-up; ``applied`` is False when ``topup_id`` was already applied."""

    project_id: str = ""
    balance: Money = Decimal(0)
    applied: bool = False


class SpendQuery(_Message):
    """Spend and limits of a project (and a key, and an endpoint) in one month."""

    project_id: str = Field(min_length=1)
    api_key_id: str = ""
    endpoint_id: str = ""
    period: str = Field(default="", description="'YYYY-MM'; empty: the current month (UTC).")


class BudgetState(_Message):
    """One budget that applies in the period, and how much of it is left."""

    scope: BudgetScope
    scope_id: str
    period: str = Field(description="As configured: 'monthly' or 'YYYY-MM'.")
    limit: Money
    spent: Money
    held: Money = Field(description="Granted to live leases and not yet billed.")
    remaining: Money = Field(description="limit - spent - held, never below 0.")


class CreditState(_Message):
    """Prepaid credits of a project."""

    balance: Money
    held: Money
    remaining: Money


class SpendReport(Reply):
    """The answer to ``SpendQuery``."""

    project_id: str = ""
    period: str = ""
    project_spend: Money = Decimal(0)
    key_spend: Money | None = None
    endpoint_spend: Money | None = None
    budgets: list[BudgetState] = Field(default_factory=list)
    credits: CreditState | None = None


class UsageQuery(_Message):
    """Usage of a project in ``[from, to)`` grouped by key, model, day (UTC) or endpoint."""

    project_id: str = Field(min_length=1)
    group_by: UsageGroup
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")


class UsageRow(_Message):
    """Totals of one group."""

    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    amount: Money


class UsageReport(Reply):
    """The answer to ``UsageQuery``, rows ordered by group."""

    rows: list[UsageRow] = Field(default_factory=list)
    total: Money = Decimal(0)


class RequestQuery(_Message):
    """One request of one project."""

    project_id: str = Field(min_length=1)
    request_id: str = Field(min_length=1)


class LineItemView(_Message):
    """A ledger line item."""

    sku: str
    quantity: int
    unit_price: Money
    amount: Money
    description: str


class LedgerEntryView(_Message):
    """A ledger entry (one provider call) with its line items."""

    event_id: str
    request_id: str
    api_key_id: str
    operation: str
    model: str
    provider: str
    deployment: str
    endpoint: str
    byok: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_amount: Money
    occurred_at: datetime
    billed_at: datetime
    line_items: list[LineItemView]
    #: The request's ``metadata`` (from its usage event); None when it had none.
    metadata: dict[str, str] | None = None


class RequestReport(Reply):
    """A request's entries (several when failover billed more than one call), oldest first."""

    entries: list[LedgerEntryView] = Field(default_factory=list)
