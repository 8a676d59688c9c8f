"""``/admin/projects/{project_id}/credentials`` and ``/admin/credentials/rewrap``.

A managed provider key is sealed (``edge.credentials``) before it is stored
and is never returned by any route: answers show its provider, fingerprint
and last four characters only. A custom ``base_url`` is refused unless it
resolves to public addresses (``gateway_common.netguard``; the operator flag
``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` admits private ones). Rewrap is the
operator's: it re-seals every credential under the current secret.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, status
from starlette.responses import Response

from gateway_common import subjects
from gateway_common.errors import NotFound
from gateway_common.netguard import check_base_url

from ....credentials import CredentialUnreadable, SealedCredential, fingerprint
from ....store import ProviderCredential, ProviderCredentialPublic, credentials_repo
from .base import (
    ERROR_RESPONSES,
    AdminRoute,
    CallerDep,
    ProjectCallerDep,
    SessionDep,
    announce_project,
    cipher,
    load_project,
)
from .schemas import CredentialCreate, CredentialList, RewrapResult

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


@router.post(
    "/projects/{project_id}/credentials",
    status_code=status.HTTP_201_CREATED,
    response_model=ProviderCredentialPublic,
)
async def add_credential(
    project_id: str, body: CredentialCreate, caller: ProjectCallerDep, session: SessionDep
) -> ProviderCredentialPublic:
    """Store (or replace) the project's managed key for a provider; the key is never shown again."""
    project = await load_project(session, caller.principal, project_id)
    if body.base_url is not None:
        await asyncio.to_thread(
            check_base_url,
            body.base_url,
            allow_private=caller.state.settings.allow_private_upstreams,
        )
    api_key = body.api_key.get_secret_value()
    sealed = cipher(caller.state).seal(api_key, project_id=project.id, provider=body.provider)
    row = await credentials_repo.save_credential(
        session=session,
        row=ProviderCredential(
            project_id=project.id,
            provider=body.provider,
            base_url=body.base_url,
            key_id=sealed.key_id,
            ciphertext=sealed.blob,
            fingerprint=fingerprint(api_key),
            last4=api_key[-4:],
        ),
    )
    public = ProviderCredentialPublic.model_validate(row)
    await announce_project(caller.state, session, project.id, subjects.CREDENTIALS_CHANGED)
    return public


@router.get("/projects/{project_id}/credentials", response_model=CredentialList)
async def list_credentials(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> CredentialList:
    """The project's managed credentials (never the keys)."""
    await load_project(session, caller.principal, project_id)
    rows = await credentials_repo.list_credentials(session=session, project_id=project_id)
    return CredentialList(data=[ProviderCredentialPublic.model_validate(row) for row in rows])


@router.delete(
    "/projects/{project_id}/credentials/{credential_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_credential(
    project_id: str, credential_id: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete a managed credential."""
    await load_project(session, caller.principal, project_id)
    row = await credentials_repo.get_credential(
        session=session, project_id=project_id, credential_id=credential_id
    )
    if row is None:
        raise NotFound("Credential not found in this project.", code="credential_not_found")
    await credentials_repo.delete_credential(session=session, row=row)
    await announce_project(caller.state, session, project_id, subjects.CREDENTIALS_CHANGED)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/credentials/rewrap", response_model=RewrapResult)
async def rewrap_credentials(caller: CallerDep, session: SessionDep) -> RewrapResult:
    """Re-seal every credential under the current ``GATEWAY_SECRET_KEY`` (operator only)."""
    caller.principal.require_operator()
    box = cipher(caller.state)
    rewrapped, unchanged, unreadable = 0, 0, []
    for row in await credentials_repo.list_credentials(session=session):
        try:
            fresh = box.rewrap(
                SealedCredential(row.key_id, row.ciphertext),
                project_id=row.project_id,
                provider=row.provider,
            )
        except CredentialUnreadable as exc:
            log.warning("credential %s not rewrapped: %s", row.id, exc)
            unreadable.append(row.id)
            continue
        if fresh is None:
            unchanged += 1
            continue
        row.key_id, row.ciphertext = fresh.key_id, fresh.blob
        session.add(row)
        rewrapped += 1
    await session.commit()
    await announce_project(caller.state, session, None, subjects.CREDENTIALS_CHANGED)
    return RewrapResult(
        key_id=box.current_key_id, rewrapped=rewrapped, unchanged=unchanged, unreadable=unreadable
    )
