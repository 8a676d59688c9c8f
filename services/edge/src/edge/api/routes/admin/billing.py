"""``/admin/projects/{project_id}/...``: budgets, credits, spend, usage and one request's cost.

Billing owns all of it; these routes check who is calling and which project
(``base``), then ask billing over NATS (``edge.billing_admin``) with a
deadline. Billing not answering is a 503 in the admin error shape, never a
hang. Money is a decimal string in and out.

    PUT  /budget                      set (limit null: remove) the project's monthly budget
    GET  /budget                      that budget and the month's spend
    PUT  /keys/{key_id}/budget        the same for one key of the project
    GET  /keys/{key_id}/budget
    POST /credits/topups              add prepaid credits, idempotent by ``topup_id``
    GET  /credits                     balance, held, remaining
    GET  /spend?period=&key_id=&endpoint=
                                      spend, budgets and credits of a month (default: current);
                                      ``endpoint`` (a slug) adds that endpoint's budget and spend
    GET  /usage?group_by=&from=&to=   usage by key, model, day or endpoint
    GET  /usage/requests/{request_id} one request's entries and line items (404 if not ours)
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import billing_api as wire
from gateway_common.errors import InvalidRequest, NotFound
from gateway_common.pricing import exact_sum

from ....billing_admin import BillingAdmin
from ....store import endpoints_repo, repo
from .base import ERROR_RESPONSES, AdminErrorBody, AdminRoute, Caller, ProjectCallerDep, SessionDep
from .base import load_project as _load_project
from .billing_schemas import (
    BudgetPut,
    BudgetView,
    CreditsView,
    DayOrInstant,
    RequestCost,
    SpendView,
    TopUp,
    TopUpResult,
    UsageView,
    range_end,
    range_start,
)

__all__ = ["router"]

_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"

router = APIRouter(
    prefix="/projects/{project_id}",
    route_class=AdminRoute,
    responses={
        **ERROR_RESPONSES,
        503: {"model": AdminErrorBody, "description": "Billing did not answer in time"},
    },
    tags=["admin: billing"],
)

MonthQuery = Annotated[str | None, Query(pattern=_MONTH, description="YYYY-MM; default: now.")]


def _billing(caller: Caller) -> BillingAdmin:
    return BillingAdmin(caller.state.nats)


async def _check_key(session: AsyncSession, caller: Caller, project_id: str, key_id: str) -> None:
    await _load_project(session, caller.principal, project_id)
    if await repo.get_api_key(session=session, project_id=project_id, key_id=key_id) is None:
        raise NotFound("API key not found in this project.", code="api_key_not_found")


async def _budget_view(
    caller: Caller, project_id: str, key_id: str | None, period: str | None
) -> BudgetView:
    report = await _billing(caller).spend(
        wire.SpendQuery(project_id=project_id, api_key_id=key_id or "", period=period or "")
    )
    scope, scope_id = ("key", key_id) if key_id else ("project", project_id)
    budget = next((b for b in report.budgets if (b.scope, b.scope_id) == (scope, scope_id)), None)
    spent = report.key_spend if key_id else report.project_spend
    return BudgetView(
        project_id=project_id,
        api_key_id=key_id,
        period=report.period,
        spent=spent or Decimal(0),
        budget=budget,
    )


async def _set_budget(
    caller: Caller, project_id: str, key_id: str | None, body: BudgetPut
) -> BudgetView:
    await _billing(caller).set_budget(
        wire.BudgetSet(
            project_id=project_id,
            scope="key" if key_id else "project",
            api_key_id=key_id or "",
            period=body.period,
            limit=body.limit,
        )
    )
    month = None if body.period == "monthly" else body.period
    return await _budget_view(caller, project_id, key_id, month)


@router.put("/budget", response_model=BudgetView)
async def put_project_budget(
    project_id: str, body: BudgetPut, caller: ProjectCallerDep, session: SessionDep
) -> BudgetView:
    """Set the project's monthly budget (``limit`` null removes it)."""
    await _load_project(session, caller.principal, project_id)
    return await _set_budget(caller, project_id, None, body)


@router.get("/budget", response_model=BudgetView)
async def get_project_budget(
    project_id: str, caller: ProjectCallerDep, session: SessionDep, period: MonthQuery = None
) -> BudgetView:
    """The project's budget and spend in a month."""
    await _load_project(session, caller.principal, project_id)
    return await _budget_view(caller, project_id, None, period)


@router.put("/keys/{key_id}/budget", response_model=BudgetView)
async def put_key_budget(
    project_id: str, key_id: str, body: BudgetPut, caller: ProjectCallerDep, session: SessionDep
) -> BudgetView:
    """Set one key's monthly budget (``limit`` null removes it)."""
    await _check_key(session, caller, project_id, key_id)
    return await _set_budget(caller, project_id, key_id, body)


@router.get("/keys/{key_id}/budget", response_model=BudgetView)
async def get_key_budget(
    project_id: str,
    key_id: str,
    caller: ProjectCallerDep,
    session: SessionDep,
    period: MonthQuery = None,
) -> BudgetView:
    """One key's budget and spend in a month."""
    await _check_key(session, caller, project_id, key_id)
    return await _budget_view(caller, project_id, key_id, period)


@router.post("/credits/topups", status_code=status.HTTP_200_OK, response_model=TopUpResult)
async def top_up_credits(
    project_id: str, body: TopUp, caller: ProjectCallerDep, session: SessionDep
) -> TopUpResult:
    """Add prepaid credits; a retry with the same ``topup_id`` is applied once."""
    await _load_project(session, caller.principal, project_id)
    report = await _billing(caller).top_up(
        wire.CreditsTopUp(
            project_id=project_id, topup_id=body.topup_id, amount=body.amount, note=body.note
        )
    )
    return TopUpResult(project_id=project_id, balance=report.balance, applied=report.applied)


@router.get("/credits", response_model=CreditsView)
async def get_credits(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> CreditsView:
    """The project's prepaid credits."""
    await _load_project(session, caller.principal, project_id)
    report = await _billing(caller).spend(wire.SpendQuery(project_id=project_id))
    return CreditsView(project_id=project_id, credits=report.credits)


@router.get("/spend", response_model=SpendView)
async def get_spend(
    project_id: str,
    caller: ProjectCallerDep,
    session: SessionDep,
    period: MonthQuery = None,
    key_id: Annotated[str | None, Query(description="Also report this key.")] = None,
    endpoint: Annotated[
        str | None, Query(description="Also report this Gateway API endpoint (its slug).")
    ] = None,
) -> SpendView:
    """Spend, budgets and credits of the project in a month (default: the current one)."""
    if key_id:
        await _check_key(session, caller, project_id, key_id)
    else:
        await _load_project(session, caller.principal, project_id)
    endpoint_id = ""
    if endpoint:
        row = await endpoints_repo.get_endpoint(
            session=session, project_id=project_id, slug=endpoint
        )
        if row is None:
            raise NotFound("Endpoint not found in this project.", code="endpoint_not_found")
        endpoint_id = row.id
    report = await _billing(caller).spend(
        wire.SpendQuery(
            project_id=project_id,
            api_key_id=key_id or "",
            endpoint_id=endpoint_id,
            period=period or "",
        )
    )
    return SpendView.model_validate(report.model_dump(exclude={"status", "message"}))


@router.get("/usage", response_model=UsageView, response_model_by_alias=True)
async def get_usage(
    project_id: str,
    caller: ProjectCallerDep,
    session: SessionDep,
    group_by: wire.UsageGroup,
    start: Annotated[
        DayOrInstant | None,
        Query(alias="from", description="YYYY-MM-DD or instant; default: 1st of this month."),
    ] = None,
    end: Annotated[
        DayOrInstant | None,
        Query(
            alias="to", description="YYYY-MM-DD (included) or instant (excluded); default: today."
        ),
    ] = None,
) -> UsageView:
    """Usage and cost grouped by key, model, day (UTC) or endpoint."""
    await _load_project(session, caller.principal, project_id)
    now = datetime.now(UTC)
    query = wire.UsageQuery.model_validate(
        {
            "project_id": project_id,
            "group_by": group_by,
            "from": range_start(start, now),
            "to": range_end(end, now),
        }
    )
    if query.end <= query.start:
        raise InvalidRequest("'to' must be after 'from'.", param="to", code="invalid_range")
    report = await _billing(caller).usage(query)
    return UsageView(
        project_id=project_id,
        group_by=group_by,
        start=query.start,
        end=query.end,
        rows=report.rows,
        total=report.total,
    )


@router.get("/usage/requests/{request_id}", response_model=RequestCost)
async def get_request_cost(
    project_id: str, request_id: str, caller: ProjectCallerDep, session: SessionDep
) -> RequestCost:
    """One request's cost and line items; another project's request is not found."""
    await _load_project(session, caller.principal, project_id)
    report = await _billing(caller).request(
        wire.RequestQuery(project_id=project_id, request_id=request_id)
    )
    if report.status == "not_found" or not report.entries:
        raise NotFound("No billed request with that id in this project.", code="request_not_found")
    return RequestCost(
        request_id=request_id,
        total_amount=exact_sum(entry.total_amount for entry in report.entries),
        entries=report.entries,
    )
