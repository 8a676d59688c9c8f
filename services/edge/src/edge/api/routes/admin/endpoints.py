"""``/admin/projects/{project_id}/endpoints``: create, list, show, update, delete Gateway API
endpoints (seed 001's ``POST /api/{project}/{slug}``).

An endpoint is addressed by its slug, unique per project (a repeat is 409).
Its model must be in the gateway's catalog when saved (400 otherwise; a
catalog edit that later drops it makes calls answer the router's 404); its
``params`` may hold generation parameters only (``store.models.ENDPOINT_PARAMS``).
Every write patches this edge's endpoint cache at once and publishes
``endpoints.changed.v1`` ``{"project_id"}``, so every edge serves the change
within moments (``edge.endpointsync``).
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from gateway_common import subjects
from gateway_common.errors import InvalidRequest, NotFound

from ....endpointsync import EndpointSync
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


def _check_model(state: EdgeState, model: str | None) -> None:
    """400 unless the catalog resolves ``model``."""
    if model is not None and not state.catalog.knows(model):
        raise InvalidRequest(
            f"The model '{model}' is not in the gateway's catalog.",
            param="model",
            code="model_not_found",
        )


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
    _check_model(caller.state, body.model)
    try:
        row = await endpoints_repo.create_endpoint(
            session=session, project_id=project.id, data=body
        )
    except endpoints_repo.DuplicateSlug:
        raise _taken(body.slug) from None
    public = EndpointPublic.model_validate(row)
    await _announce(caller.state, session, project.id)
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
    """Change an endpoint; fields left out keep their value, ``params`` is replaced whole."""
    row = await _load(session, caller.principal, project_id, slug)
    _check_model(caller.state, body.model)
    try:
        row = await endpoints_repo.update_endpoint(session=session, row=row, data=body)
    except endpoints_repo.DuplicateSlug:
        raise _taken(body.slug or slug) from None
    public = EndpointPublic.model_validate(row)
    await _announce(caller.state, session, project_id)
    return public


@router.delete("/{slug}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    project_id: str, slug: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete an endpoint: its URL answers 404 at once, on every edge."""
    row = await _load(session, caller.principal, project_id, slug)
    await endpoints_repo.delete_endpoint(session=session, row=row)
    await _announce(caller.state, session, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
