"""``/admin/projects/{project_id}/gateways``: create, list, show, update, delete seed 002's
gateways (called with ``model`` = the id or ``name:short`` on ``/v1/chat/completions`` and
``/api/v1/chat-completions``; see ``edge.gateways``).

Every field is checked when saved, a 400 naming it: the body models check each
field on its own (``store.gateways``); here, the gateway as it would be saved
(after a PATCH: the row with the patch applied) must name a catalog model (and
catalog ``routing`` models), unless ``credential_id`` names one of the
project's own credentials, in which case ``model`` is that endpoint's model name:
the credential must have a ``base_url`` (400 ``credential_base_url_missing``
otherwise: the model name is meant for that endpoint, not the provider's
default one) and it is checked against the SSRF rules again, as when the
credential was stored (``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` may have changed). A ``collection_id`` being
set must be one of the project's collections in rag (400 naming it otherwise: another
project's collection cannot be attached; rag not answering is a 503, nothing saved).

Every write patches this edge's gateway cache at once and publishes
``gateways.changed.v1`` ``{"project_id"}``, so every edge serves the change
within moments (``edge.gatewaysync``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from gateway_common import subjects
from gateway_common.errors import InvalidRequest, NotFound
from gateway_common.netguard import check_base_url

from ....gatewaysync import GatewaySync
from ....state import EdgeState
from ....store import Gateway, credentials_repo, gateways
from ....store.gateways import GatewayCreate, GatewayPublic, GatewayUpdate
from .base import (
    ERROR_RESPONSES,
    AdminRoute,
    Principal,
    ProjectCallerDep,
    SessionDep,
    load_project,
    publish,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/projects/{project_id}/gateways", route_class=AdminRoute, responses=ERROR_RESPONSES
)


class GatewayList(BaseModel):
    """``GET /admin/projects/{id}/gateways``."""

    data: list[GatewayPublic]


def _not_in_catalog(param: str, model: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{param}': the model '{model}' is not in the gateway's catalog.",
        param=param,
        code="model_not_found",
    )


async def _check_own_endpoint(state: EdgeState, base_url: str | None) -> None:
    """400 unless the credential has its own ``base_url`` that passes the SSRF rules now
    (as when a credential is stored; the router checks again on every call)."""
    if base_url is None:
        raise InvalidRequest(
            "Invalid 'credential_id': the credential has no 'base_url'; a gateway served by "
            "its own endpoint needs the credential's OpenAI-compatible base_url.",
            param="credential_id",
            code="credential_base_url_missing",
        )
    await asyncio.to_thread(
        check_base_url, base_url, allow_private=state.settings.allow_private_upstreams
    )


async def _check(
    state: EdgeState, session: AsyncSession, row: Gateway, *, collection_changed: bool
) -> None:
    """400 naming the field unless every edge can serve ``row`` (not saved yet)."""
    if collection_changed and row.collection_id is not None:
        try:
            await state.rag.get_collection(row.project_id, row.collection_id)
        except NotFound:
            raise InvalidRequest(
                "Invalid 'collection_id': no collection with that id in this project.",
                param="collection_id",
                code="collection_not_found",
            ) from None
    if row.credential_id is not None:
        credential = await credentials_repo.get_credential(
            session=session, project_id=row.project_id, credential_id=row.credential_id
        )
        if credential is None:
            raise InvalidRequest(
                "Invalid 'credential_id': no credential with that id in this project.",
                param="credential_id",
                code="credential_not_found",
            )
        await _check_own_endpoint(state, credential.base_url)
    elif not state.catalog.knows(row.model):
        raise _not_in_catalog("model", row.model)
    for which in ("cheap", "strong"):
        name = (row.routing or {}).get(which)
        if name is not None and not state.catalog.knows(name):
            raise _not_in_catalog(f"routing.{which}", name)


async def _load(session: AsyncSession, principal: Principal, project_id: str, gid: str) -> Gateway:
    await load_project(session, principal, project_id)
    row = await gateways.get_gateway(session=session, project_id=project_id, gateway_id=gid)
    if row is None:
        raise NotFound("Gateway not found in this project.", code="gateway_not_found")
    return row


async def _announce(state: EdgeState, session: AsyncSession, project_id: str) -> None:
    """Apply a committed change of the project's gateways here, then tell every edge."""
    await GatewaySync.refresh(state.gateways, session, project_id)
    await publish(state, {"project_id": project_id}, subjects.GATEWAYS_CHANGED)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=GatewayPublic)
async def create_gateway(
    project_id: str, body: GatewayCreate, caller: ProjectCallerDep, session: SessionDep
) -> GatewayPublic:
    """Create a gateway; it answers as ``model`` at once."""
    project = await load_project(session, caller.principal, project_id)
    candidate = Gateway.model_validate(body, update={"project_id": project.id})
    await _check(caller.state, session, candidate, collection_changed=True)
    row = await gateways.create_gateway(session=session, project_id=project.id, data=body)
    public = GatewayPublic.of(row)
    await _announce(caller.state, session, project.id)
    return public


@router.get("", response_model=GatewayList)
async def list_gateways(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> GatewayList:
    """The project's gateways, oldest first."""
    await load_project(session, caller.principal, project_id)
    rows = await gateways.list_gateways(session=session, project_id=project_id)
    return GatewayList(data=[GatewayPublic.of(row) for row in rows])


@router.get("/{gateway_id}", response_model=GatewayPublic)
async def show_gateway(
    project_id: str, gateway_id: str, caller: ProjectCallerDep, session: SessionDep
) -> GatewayPublic:
    """One gateway."""
    return GatewayPublic.of(await _load(session, caller.principal, project_id, gateway_id))


@router.patch("/{gateway_id}", response_model=GatewayPublic)
async def update_gateway(
    project_id: str,
    gateway_id: str,
    body: GatewayUpdate,
    caller: ProjectCallerDep,
    session: SessionDep,
) -> GatewayPublic:
    """Change a gateway; fields left out keep their value."""
    row = await _load(session, caller.principal, project_id, gateway_id)
    changes = body.model_dump(exclude_unset=True)
    candidate = Gateway.model_validate({**row.model_dump(), **changes})
    await _check(caller.state, session, candidate, collection_changed="collection_id" in changes)
    row = await gateways.update_gateway(session=session, row=row, data=body)
    public = GatewayPublic.of(row)
    await _announce(caller.state, session, project_id)
    return public


@router.delete("/{gateway_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_gateway(
    project_id: str, gateway_id: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete a gateway: calls naming it answer 404 at once, on every edge."""
    row = await _load(session, caller.principal, project_id, gateway_id)
    await gateways.delete_gateway(session=session, row=row)
    await _announce(caller.state, session, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
