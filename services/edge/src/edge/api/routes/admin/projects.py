"""``/admin/projects``: create, list, show, update, delete projects.

Creating and deleting projects is the operator's; a project admin key lists
and shows only its own project and may update its settings. A project's
``rate_limits`` are shared by all its keys (counted on every edge); setting
them is the operator's, since they bound what the project's own admins may use.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from starlette.responses import Response

from gateway_common import subjects
from gateway_common.errors import InvalidRequest

from ....channels import channel_settings, keep_widget_id
from ....store import ProjectPublic, repo
from .base import (
    ERROR_RESPONSES,
    AdminRoute,
    CallerDep,
    ProjectCallerDep,
    SessionDep,
    announce_project,
    load_project,
)
from .base import announce_project_deleted as _announce_deleted
from .schemas import ProjectCreate, ProjectList, ProjectUpdate, stored_limits

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


def _taken(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"A project named '{name}' already exists.",
        param="name",
        http_status=status.HTTP_409_CONFLICT,
        code="duplicate_name",
    )


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic)
async def create_project(
    body: ProjectCreate, caller: CallerDep, session: SessionDep
) -> ProjectPublic:
    """Create a project (operator only)."""
    caller.principal.require_operator()
    if body.type == "channel":
        channel_settings(body.settings or {})  # 400 naming the field
    try:
        project = await repo.create_project(
            session=session,
            name=body.name,
            type=body.type,
            settings=keep_widget_id(body.settings, None) or {},
            rate_limits=stored_limits(body.rate_limits),
        )
    except repo.DuplicateName:
        raise _taken(body.name) from None
    public = ProjectPublic.model_validate(project)
    await announce_project(caller.state, session, project.id, subjects.PROJECTS_CHANGED)
    return public


@router.get("/projects", response_model=ProjectList)
async def list_projects(caller: CallerDep, session: SessionDep) -> ProjectList:
    """Every project the caller may see: all for the operator, its own for a project admin."""
    rows = await repo.list_projects(session=session, only=caller.principal.project_id)
    return ProjectList(data=[ProjectPublic.model_validate(row) for row in rows])


@router.get("/projects/{project_id}", response_model=ProjectPublic)
async def show_project(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> ProjectPublic:
    """One project."""
    return ProjectPublic.model_validate(await load_project(session, caller.principal, project_id))


@router.patch("/projects/{project_id}", response_model=ProjectPublic)
async def update_project(
    project_id: str, body: ProjectUpdate, caller: ProjectCallerDep, session: SessionDep
) -> ProjectPublic:
    """Rename a project and/or replace its settings or (operator only) its rate limits."""
    project = await load_project(session, caller.principal, project_id)
    limits: dict[str, Any] | repo.Unset | None = repo.UNSET
    if "rate_limits" in body.model_fields_set:
        caller.principal.require_operator()
        limits = stored_limits(body.rate_limits)
    if project.type == "channel" and body.settings is not None:
        channel_settings(body.settings)  # 400 naming the field
    try:
        project = await repo.update_project(
            session=session,
            project=project,
            name=body.name,
            settings=keep_widget_id(body.settings, project.settings),
            rate_limits=limits,
        )
    except repo.DuplicateName:
        raise _taken(body.name or "") from None
    public = ProjectPublic.model_validate(project)
    await announce_project(caller.state, session, project_id, subjects.PROJECTS_CHANGED)
    return public


@router.delete("/projects/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> Response:
    """Delete a project with its keys and credentials (operator only); its keys stop at once."""
    caller.principal.require_operator()
    project = await load_project(session, caller.principal, project_id)
    key_ids = [key.id for key in await repo.list_api_keys(session=session, project_id=project.id)]
    await repo.delete_project(session=session, project=project)
    await _announce_deleted(caller.state, project_id, key_ids)
    await announce_project(caller.state, session, project_id, subjects.PROJECTS_CHANGED)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
