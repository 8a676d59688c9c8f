"""``/admin/projects/{id}/channel-key``: a channel's key (seed 003), created, rotated, read.

``POST`` creates the key or rotates it (the old one is refused at once on every edge:
the row's hash is replaced, then ``projects.changed.v1`` names the project and every
edge's ``ChannelSync`` reloads it); ``GET`` opens the sealed key for its owner, as
seed 003's channel page shows it. Both need the project's admin (or the operator).

``/admin/projects/{id}/widget``: the publishable widget id of the embeddable widget
(``edge.channels``, ``docs/widget.md``). ``POST`` creates or rotates it (the old id
stops working on every edge at once, as a key does); ``GET`` shows it and the snippet
to paste into a page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlmodel import col, delete

from gateway_common import subjects
from gateway_common.errors import InvalidRequest, NotFound

from ....channels import WIDGET_SETTING, generate_channel_key, generate_widget_id, seal_aad
from ....credentials import SealedCredential
from ....store import ChannelKey, Project
from .base import (
    ERROR_RESPONSES,
    AdminRoute,
    ProjectCallerDep,
    SessionDep,
    announce_project,
    cipher,
    load_project,
)

__all__ = ["ChannelKeyPublic", "WidgetPublic", "router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class ChannelKeyPublic(BaseModel):
    """A channel's key, for its owner: send it in ``X-Channel-Key``."""

    project_id: str
    key: str
    prefix: str
    created_at: datetime


def _channel(project: Project) -> None:
    if project.type != "channel":
        raise InvalidRequest(
            "Only projects of type 'channel' have a channel key.", code="wrong_project_type"
        )


@router.post("/projects/{project_id}/channel-key", response_model=ChannelKeyPublic)
async def rotate_channel_key(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> ChannelKeyPublic:
    """Create the channel's key, or replace it (the old key stops working at once)."""
    project = await load_project(session, caller.principal, project_id)
    _channel(project)
    key = generate_channel_key()
    sealed = cipher(caller.state).seal(key, project_id=project.id, provider=seal_aad())
    row = ChannelKey(
        project_id=project.id,
        key_hash=caller.state.channels.hash(key),
        prefix=key[:12],
        key_id=sealed.key_id,
        ciphertext=sealed.blob,
        created_at=datetime.now(UTC),
    )
    await session.exec(delete(ChannelKey).where(col(ChannelKey.project_id) == project.id))
    session.add(row)
    await session.commit()
    await announce_project(caller.state, session, project.id, subjects.PROJECTS_CHANGED)
    return ChannelKeyPublic(
        project_id=project.id, key=key, prefix=row.prefix, created_at=row.created_at
    )


@router.get("/projects/{project_id}/channel-key", response_model=ChannelKeyPublic)
async def show_channel_key(
    project_id: str, caller: ProjectCallerDep, session: SessionDep
) -> ChannelKeyPublic:
    """The channel's current key (opened from its AES-256-GCM seal)."""
    project = await load_project(session, caller.principal, project_id)
    _channel(project)
    row = await session.get(ChannelKey, project.id)
    if row is None:
        raise NotFound("This channel has no key yet; POST to create one.", code="no_channel_key")
    key = cipher(caller.state).open(
        SealedCredential(row.key_id, row.ciphertext), project_id=project.id, provider=seal_aad()
    )
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return ChannelKeyPublic(project_id=project.id, key=key, prefix=row.prefix, created_at=created)


class WidgetPublic(BaseModel):
    """A channel's widget id and the tag that embeds the widget (no secret in either)."""

    project_id: str
    widget_id: str
    snippet: str


def _widget(request: Request, project_id: str, widget_id: str) -> WidgetPublic:
    src = str(request.base_url).rstrip("/") + "/channel/v1/widget.js"
    snippet = f'<script src="{src}" data-widget-id="{widget_id}" async></script>'
    return WidgetPublic(project_id=project_id, widget_id=widget_id, snippet=snippet)


@router.post("/projects/{project_id}/widget", response_model=WidgetPublic)
async def rotate_widget(
    project_id: str, request: Request, caller: ProjectCallerDep, session: SessionDep
) -> WidgetPublic:
    """Create the channel's widget id, or replace it (pages with the old id stop working)."""
    project = await load_project(session, caller.principal, project_id)
    _channel(project)
    widget_id = generate_widget_id()
    project.settings = {**(project.settings or {}), WIDGET_SETTING: widget_id}
    session.add(project)
    await session.commit()
    await announce_project(caller.state, session, project_id, subjects.PROJECTS_CHANGED)
    return _widget(request, project_id, widget_id)


@router.get("/projects/{project_id}/widget", response_model=WidgetPublic)
async def show_widget(
    project_id: str, request: Request, caller: ProjectCallerDep, session: SessionDep
) -> WidgetPublic:
    """The channel's widget id and its snippet."""
    project = await load_project(session, caller.principal, project_id)
    _channel(project)
    widget_id = (project.settings or {}).get(WIDGET_SETTING)
    if not isinstance(widget_id, str):
        raise NotFound("This channel has no widget yet; POST to create one.", code="no_widget")
    return _widget(request, project_id, widget_id)
