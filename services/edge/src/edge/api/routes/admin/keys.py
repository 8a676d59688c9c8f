"""``/admin/projects/{project_id}/keys``: create, list, show, update, revoke, delete API keys.

A key may carry ``rate_limits`` (requests per minute / per day, tokens per
minute, counted on every edge) and ``allowed_models`` (catalog names or aliases;
each must be in the catalog when saved, 400 naming ``allowed_models`` otherwise);
both are set at creation and changed with ``PATCH``.

The full key is in the creation answer only; afterwards a key shows its
prefix, scopes and times, never the key or its hash. A key id of another
project is "not found". Every write is announced (``base.announce_key``), so
a revoked or deleted key stops working on every edge within moments.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from gateway_common.errors import InvalidRequest, NotFound

from ....auth import generate_api_key
from ....state import EdgeState
from ....store import ApiKey, ApiKeyCreate, ApiKeyPublic, repo
from .base import (
    ERROR_RESPONSES,
    AdminRoute,
    Principal,
    ProjectCallerDep,
    SessionDep,
    announce_key,
    load_project,
)
from .schemas import KeyCreate, KeyCreated, KeyList, KeyUpdate, stored_limits

__all__ = ["router"]

router = APIRouter(
    prefix="/projects/{project_id}/keys", route_class=AdminRoute, responses=ERROR_RESPONSES
)


async def _load_key(
    session: AsyncSession, principal: Principal, project_id: str, key_id: str
) -> ApiKey:
    await load_project(session, principal, project_id)
    key = await repo.get_api_key(session=session, project_id=project_id, key_id=key_id)
    if key is None:
        raise NotFound("API key not found in this project.", code="api_key_not_found")
    return key


def _check_models(state: EdgeState, models: list[str] | None) -> None:
    """400 naming ``allowed_models`` unless the catalog resolves every listed model."""
    unknown = [m for m in models or () if not state.catalog.knows(m)]
    if unknown:
        raise InvalidRequest(
            f"allowed_models: the model '{unknown[0]}' is not in the gateway's catalog.",
            param="allowed_models",
            code="model_not_found",
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(
    project_id: str, body: KeyCreate, caller: ProjectCallerDep, session: SessionDep
) -> KeyCreated:
    """Create a key; the answer carries the full key, shown this once."""
    project = await load_project(session, caller.principal, project_id)
    _check_models(caller.state, body.allowed_models)
    key = generate_api_key()
    row = await repo.create_api_key(
        session=session,
        project_id=project.id,
        data=ApiKeyCreate(
            name=body.name,
            description=body.description,
            scopes=list(body.scopes),
            expires_at=body.expiry(datetime.now(UTC)),
            rate_limits=stored_limits(body.rate_limits),
            allowed_models=body.allowed_models,
        ),
        key=key,
        key_hash=caller.state.keys.hash(key),
    )
    await announce_key(caller.state, row.id, row)
    return KeyCreated.model_validate(row, update={"key": key})


@router.get("", response_model=KeyList)
async def list_keys(project_id: str, caller: ProjectCallerDep, session: SessionDep) -> KeyList:
    """The project's keys, revoked and expired ones included."""
    await load_project(session, caller.principal, project_id)
    rows = await repo.list_api_keys(session=session, project_id=project_id)
    return KeyList(data=[ApiKeyPublic.model_validate(row) for row in rows])


@router.get("/{key_id}", response_model=ApiKeyPublic)
async def show_key(
    project_id: str, key_id: str, caller: ProjectCallerDep, session: SessionDep
) -> ApiKeyPublic:
    """One key (never the key itself)."""
    return ApiKeyPublic.model_validate(
        await _load_key(session, caller.principal, project_id, key_id)
    )


@router.patch("/{key_id}", response_model=ApiKeyPublic)
async def update_key(
    project_id: str, key_id: str, body: KeyUpdate, caller: ProjectCallerDep, session: SessionDep
) -> ApiKeyPublic:
    """Change a key's name, description, rate limits or allowed models; every edge applies
    the change within moments (keys.changed.v1)."""
    key = await _load_key(session, caller.principal, project_id, key_id)
    changes = body.model_dump(include=body.model_fields_set)
    if "rate_limits" in changes:
        changes["rate_limits"] = stored_limits(body.rate_limits)
    if "allowed_models" in changes:
        _check_models(caller.state, body.allowed_models)
    key = await repo.update_api_key(session=session, key=key, changes=changes)
    await announce_key(caller.state, key.id, key)
    return ApiKeyPublic.model_validate(key)


@router.post("/{key_id}/revoke", response_model=ApiKeyPublic)
async def revoke_key(
    project_id: str, key_id: str, caller: ProjectCallerDep, session: SessionDep
) -> ApiKeyPublic:
    """Revoke a key: it stops working at once, on every edge. Idempotent."""
    key = await _load_key(session, caller.principal, project_id, key_id)
    key = await repo.revoke_api_key(session=session, key=key)
    await announce_key(caller.state, key.id, key)
    return ApiKeyPublic.model_validate(key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_key(
    project_id: str, key_id: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete a key: it stops working at once, on every edge."""
    key = await _load_key(session, caller.principal, project_id, key_id)
    await repo.delete_api_key(session=session, key=key)
    await announce_key(caller.state, key_id, None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
