"""``/admin/projects/{project_id}/endpoints``: create, list, show, update, delete Gateway API
endpoints (seed 001's ``POST /api/{project}/{slug}``).

An endpoint is addressed by its slug, unique per project (a repeat is 409).
Its model must be in the gateway's catalog when saved (400 otherwise; a
catalog edit that later drops it makes calls answer the router's 404); its
``params`` may hold generation parameters only (``store.models.ENDPOINT_PARAMS``).

Every setting is refused at save time with a 400 naming the field, never at
call time: the body models check each field (``store.models``), then the
endpoint as it would be saved (after a PATCH: the row with the patch applied) is
checked as a whole here: its ``fallbacks`` each a catalog model other than the
endpoint's own (``fallbacks[1]``), and it is compiled exactly as every edge's
cache will compile it (``endpointsync.view_of``: ``input_schema`` /
``output_schema`` against their meta-schema, ``guardrails`` item by item), so a
saved endpoint always loads.
Every write patches this edge's endpoint cache at once and publishes
``endpoints.changed.v1`` ``{"project_id"}``, so every edge serves the change
within moments (``edge.endpointsync``).

``monthly_budget`` is stored here and enforced by billing: after the commit,
a create or update that sets it (and a delete of an endpoint that had one)
sets or removes billing's budget of scope ``endpoint`` (id = the endpoint's id)
through billing's admin request/reply (``edge.billing_admin``); billing
announces ``billing.budgets.changed.v1`` before it answers, so the budget
binds every edge when the call returns. Billing not answering is a 503 saying
the endpoint was saved but its budget is not in force; repeating the request
applies it (setting a budget is idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from decimal import Decimal

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from gateway_common import billing_api as wire
from gateway_common import subjects
from gateway_common.errors import InvalidRequest, NotFound, ServiceUnavailable

from ....billing_admin import BillingAdmin
from ....endpointsync import EndpointSync, view_of
from ....state import EdgeState
from ....store import Endpoint, EndpointCreate, EndpointPublic, EndpointUpdate, endpoints_repo
from .base import (
    ERROR_RESPONSES,
    AdminErrorBody,
    AdminRoute,
    Principal,
    ProjectCallerDep,
    SessionDep,
    load_project,
    publish,
)
from .schemas import EndpointList

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/projects/{project_id}/endpoints",
    route_class=AdminRoute,
    responses=ERROR_RESPONSES,
)
_CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"model": AdminErrorBody, "description": "The project already has that slug"}
}


def _taken(slug: str) -> InvalidRequest:
    return InvalidRequest(
        f"An endpoint with slug '{slug}' already exists in this project.",
        param="slug",
        http_status=status.HTTP_409_CONFLICT,
        code="duplicate_slug",
    )


def _check_model(state: EdgeState, model: str) -> None:
    """400 unless the catalog resolves ``model``."""
    if not state.catalog.knows(model):
        raise InvalidRequest(
            f"The model '{model}' is not in the gateway's catalog.",
            param="model",
            code="model_not_found",
        )


def _check_fallbacks(state: EdgeState, model: str, fallbacks: list[str]) -> None:
    """400 naming ``fallbacks[i]`` unless each is a catalog model other than ``model``
    (the same name, or an alias of the same model; a provider-prefixed name pins another
    route and may follow its model)."""
    own = state.catalog.unpinned_public_name(model)
    for i, name in enumerate(fallbacks):
        param = f"fallbacks[{i}]"
        if not state.catalog.knows(name):
            raise InvalidRequest(
                f"Invalid '{param}': the model '{name}' is not in the gateway's catalog.",
                param=param,
                code="model_not_found",
            )
        if name == model or (own is not None and state.catalog.unpinned_public_name(name) == own):
            raise InvalidRequest(
                f"Invalid '{param}': '{name}' is the endpoint's own model; a fallback must "
                "be another model.",
                param=param,
                code="invalid_fallback",
            )


def _check_endpoint(state: EdgeState, row: Endpoint, changed: Collection[str]) -> None:
    """400 naming the field unless ``row`` (not saved yet) is one every edge can serve.

    The catalog checks cover what ``changed`` names, so a PATCH of another field (say
    ``active``) still works after a catalog edit dropped the model.
    """
    if "model" in changed:
        _check_model(state, row.model)
    if "model" in changed or "fallbacks" in changed:
        _check_fallbacks(state, row.model, list(row.fallbacks or ()))
    view_of(row)


async def _load(
    session: AsyncSession, principal: Principal, project_id: str, slug: str
) -> Endpoint:
    await load_project(session, principal, project_id)
    row = await endpoints_repo.get_endpoint(session=session, project_id=project_id, slug=slug)
    if row is None:
        raise NotFound("Endpoint not found in this project.", code="endpoint_not_found")
    return row


async def _announce(state: EdgeState, session: AsyncSession, project_id: str) -> None:
    """Apply a committed change of the project's endpoints here, then tell every edge."""
    await EndpointSync.refresh(state.endpoints, session, project_id)
    await publish(state, {"project_id": project_id}, subjects.ENDPOINTS_CHANGED)


async def _set_budget(
    state: EdgeState, project_id: str, endpoint_id: str, limit: Decimal | None, *, deleted: bool
) -> None:
    """Make billing's budget of the endpoint ``limit`` (after the endpoint's row was committed)."""
    request = wire.BudgetSet(
        project_id=project_id, scope="endpoint", endpoint_id=endpoint_id, limit=limit
    )
    try:
        await BillingAdmin(state.nats).set_budget(request)
    except ServiceUnavailable:
        if deleted:  # a budget of an endpoint that no longer exists never applies again
            log.warning("budget of deleted endpoint %s not removed from billing", endpoint_id)
            return
        raise ServiceUnavailable(
            "The endpoint was saved, but billing did not answer, so its monthly_budget is "
            "not in force yet. Repeat the request to apply it.",
            code="billing_unavailable",
        ) from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointPublic,
    responses=_CONFLICT,
)
async def create_endpoint(
    project_id: str, body: EndpointCreate, caller: ProjectCallerDep, session: SessionDep
) -> EndpointPublic:
    """Create an endpoint; it answers on ``POST /api/{project_id}/{slug}`` at once."""
    project = await load_project(session, caller.principal, project_id)
    candidate = Endpoint.model_validate(body, update={"project_id": project.id})
    _check_endpoint(caller.state, candidate, EndpointCreate.model_fields)
    try:
        row = await endpoints_repo.create_endpoint(
            session=session, project_id=project.id, data=body
        )
    except endpoints_repo.DuplicateSlug:
        raise _taken(body.slug) from None
    public = EndpointPublic.model_validate(row)
    await _announce(caller.state, session, project.id)
    if row.monthly_budget is not None:
        await _set_budget(caller.state, project.id, row.id, row.monthly_budget, deleted=False)
    return public


@router.get("", response_model=EndpointList)
async def list_endpoints(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> EndpointList:
    """The project's endpoints by slug, inactive ones included."""
    await load_project(session, caller.principal, project_id)
    rows = await endpoints_repo.list_endpoints(session=session, project_id=project_id)
    return EndpointList(data=[EndpointPublic.model_validate(row) for row in rows])


@router.get("/{slug}", response_model=EndpointPublic)
async def show_endpoint(
    project_id: str, slug: str, caller: ProjectCallerDep, session: SessionDep
) -> EndpointPublic:
    """One endpoint."""
    return EndpointPublic.model_validate(await _load(session, caller.principal, project_id, slug))


@router.patch("/{slug}", response_model=EndpointPublic, responses=_CONFLICT)
async def update_endpoint(
    project_id: str,
    slug: str,
    body: EndpointUpdate,
    caller: ProjectCallerDep,
    session: SessionDep,
) -> EndpointPublic:
    """Change an endpoint; fields left out keep their value, null clears a nullable one,
    ``params`` / ``guardrails`` / ``rate_limits`` / ``fallbacks`` are replaced whole."""
    row = await _load(session, caller.principal, project_id, slug)
    changes = body.model_dump(exclude_unset=True)
    candidate = Endpoint.model_validate({**row.model_dump(), **changes})
    _check_endpoint(caller.state, candidate, changes)
    try:
        row = await endpoints_repo.update_endpoint(session=session, row=row, data=body)
    except endpoints_repo.DuplicateSlug:
        raise _taken(body.slug or slug) from None
    public = EndpointPublic.model_validate(row)
    await _announce(caller.state, session, project_id)
    if "monthly_budget" in body.model_fields_set:
        await _set_budget(caller.state, project_id, row.id, row.monthly_budget, deleted=False)
    return public


@router.delete("/{slug}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    project_id: str, slug: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete an endpoint: its URL answers 404 at once, on every edge."""
    row = await _load(session, caller.principal, project_id, slug)
    endpoint_id, budgeted = row.id, row.monthly_budget is not None
    await endpoints_repo.delete_endpoint(session=session, row=row)
    await _announce(caller.state, session, project_id)
    if budgeted:
        await _set_budget(caller.state, project_id, endpoint_id, None, deleted=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
