"""What every admin route shares: the ``{ok: false, error}`` error shape, who is calling, the
project access rule, and announcing key changes.

Callers. ``Authorization: Bearer <token>`` where the token is either
``GATEWAY_ADMIN_TOKEN`` (compared in constant time): the *operator*, who
may do anything; or a gateway key carrying the ``admin`` scope: a *project
admin*, limited to its own project. Decisions, in order (seed 001's table):
no bearer -> 401 "Missing Bearer token."; unknown, revoked or expired key ->
401; a key without ``admin`` -> 403 naming the scope; a project admin on
another project's path -> 403 "Token does not belong to this project."
(before any lookup, so it cannot probe which projects exist); an operator
on a project that does not exist -> 404.

Errors. Admin is not an OpenAI surface, so its errors take the ``/api``
shape of seed 001: ``{"ok": false, "error": "<message>", "code": "<code>"}``
with the error's status. ``AdminRoute`` applies it to everything raised
while handling a matched admin route, dependencies and body validation
included.

Key changes. After a write commits, ``announce_key`` patches this edge's
cache at once and publishes ``keys.changed.v1`` with the key id, which makes
every other edge reload that key (``edge.keysync``). Publishing is best
effort: with NATS down the others catch up at their periodic full reload.
Project and credential changes go the same way (``announce_project``:
``projects.changed.v1`` / ``credentials.changed.v1``, ``edge.projectsync``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, Request
from nats.errors import Error as NatsError
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from gateway_common import db, subjects
from gateway_common.errors import GatewayError, NotFound, PermissionDenied, Unauthenticated

from .... import console
from ....auth import WRONG_PROJECT, bearer_token, require_scope
from ....channels import ChannelSync
from ....credentials import CredentialCipher
from ....endpointsync import EndpointSync
from ....keysync import entry_for
from ....projectsync import ProjectSync
from ....state import EdgeState
from ....store import ApiKey, Project, repo
from ...deps import StateDep
from ...errors import OkShapedRoute, ok_error_response

__all__ = [
    "ERROR_RESPONSES",
    "AdminErrorBody",
    "AdminRoute",
    "Caller",
    "CallerDep",
    "Principal",
    "ProjectCallerDep",
    "SessionDep",
    "admin_error",
    "announce_key",
    "announce_project",
    "announce_project_deleted",
    "authenticate_admin",
    "cipher",
    "load_project",
    "principal_of_session",
    "publish",
]

log = logging.getLogger(__name__)

_ANNOUNCE_TIMEOUT_S = 1


class AdminErrorBody(BaseModel):
    """Every admin error: seed 001's ``{ok: false, error}`` plus a stable machine ``code``."""

    ok: Literal[False] = False
    error: str
    code: str


#: OpenAPI description of the errors every admin route may answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": AdminErrorBody, "description": what}
    for status, what in (
        (400, "Invalid request"),
        (401, "Missing, unknown, revoked or expired token"),
        (403, "Missing scope, another project's token, or operator-only action"),
        (404, "No such project, key or credential"),
    )
}


def admin_error(err: GatewayError) -> Response:
    """The ``{ok: false, error, code}`` response for ``err``."""
    return ok_error_response(err)


class AdminRoute(OkShapedRoute):
    """An ``APIRoute`` whose failures, dependencies' included, answer in ``AdminErrorBody``."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the operator (``project_id is None``) or one project's admin key."""

    project_id: str | None
    key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.project_id is None

    def require_operator(self) -> None:
        """``PermissionDenied`` unless this is the operator token."""
        if not self.is_operator:
            raise PermissionDenied(
                "This action needs the operator token (GATEWAY_ADMIN_TOKEN).",
                code="operator_only",
            )

    def require_project(self, project_id: str) -> None:
        """``PermissionDenied`` (seed 001's message) for a project admin of another project."""
        if self.project_id is not None and self.project_id != project_id:
            raise PermissionDenied(WRONG_PROJECT, code="wrong_project")


async def authenticate_admin(request: Request, state: StateDep) -> Principal:
    """The caller of an admin route (see the module docstring).

    Without ``Authorization``, a console session cookie (``edge.console``) stands in for
    the bearer; state-changing calls then also need its CSRF token.
    """
    cookie = request.cookies.get(console.COOKIE)
    sessions: console.ConsoleSessions | None = getattr(request.app.state, "console", None)
    if "authorization" not in request.headers and cookie and sessions is not None:
        session = sessions.read(cookie)
        sessions.check_csrf(session, request.method, request.headers.get(console.CSRF_HEADER))
        return principal_of_session(state, sessions, session)
    token = bearer_token(request.headers.get("authorization"))
    operator = state.settings.admin_token
    if operator is not None and hmac.compare_digest(
        token.encode(), operator.get_secret_value().encode()
    ):
        return Principal(project_id=None)
    entry = require_scope(await state.keys.resolve(token), "admin")
    return Principal(project_id=entry.project_id, key_id=entry.key_id)


def principal_of_session(
    state: EdgeState, sessions: console.ConsoleSessions, session: console.ConsoleSession
) -> Principal:
    """Who a console session is, checked against the current admin token and key cache."""
    if session.key_id is None:
        operator = state.settings.admin_token
        if operator is None or not hmac.compare_digest(
            (session.operator_fp or "").encode(),
            sessions.fingerprint(operator.get_secret_value()).encode(),
        ):
            raise Unauthenticated("The admin token of this console session has changed.")
        return Principal(project_id=None)
    entry = require_scope(state.keys.by_id(session.key_id), "admin")
    return Principal(project_id=entry.project_id, key_id=entry.key_id)


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One database session per admin request."""
    async with db.make_sessionmaker(state.engine)() as session:
        yield session


@dataclass(frozen=True, slots=True)
class Caller:
    """An admin request's principal and the edge it runs on."""

    principal: Principal
    state: EdgeState


async def get_caller(request: Request, state: StateDep) -> Caller:
    return Caller(await authenticate_admin(request, state), state)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_project_caller(project_id: str, caller: CallerDep) -> Caller:
    """The caller of a route under ``/projects/{project_id}``, if that project is theirs.

    A dependency, so another project's token is refused before the body is read.
    """
    caller.principal.require_project(project_id)
    return caller


ProjectCallerDep = Annotated[Caller, Depends(get_project_caller)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def load_project(session: AsyncSession, principal: Principal, project_id: str) -> Project:
    """Project ``project_id`` if ``principal`` may see it; 403 or 404 otherwise."""
    principal.require_project(project_id)
    project = await repo.get_project(session=session, project_id=project_id)
    if project is None:
        raise NotFound("Project not found.", code="project_not_found")
    return project


def cipher(state: EdgeState) -> CredentialCipher:
    """The credential cipher of this edge's secrets (cheap: two HKDFs per secret)."""
    settings = state.settings
    return CredentialCipher(
        settings.secret_key.get_secret_value().encode(), settings.previous_secrets()
    )


async def publish(
    state: EdgeState, payload: dict[str, str], subject: str = subjects.KEYS_CHANGED
) -> None:
    """Tell every edge about a committed change (best effort: see the module docstring)."""
    try:
        await state.nats.publish(subject, orjson.dumps(payload))
        await state.nats.flush(timeout=_ANNOUNCE_TIMEOUT_S)
    except NatsError:
        log.warning("%s not published; other edges catch up at their next reload", subject)


async def announce_key(state: EdgeState, key_id: str, row: ApiKey | None) -> None:
    """Apply a committed change of key ``key_id`` here (``row`` None: deleted), then tell all edges."""
    if row is None:
        state.keys.remove(key_id)
    else:
        state.keys.put(row.key_hash, entry_for(row))
    await publish(state, {"key_id": key_id})


async def announce_project_deleted(state: EdgeState, project_id: str, key_ids: list[str]) -> None:
    """Drop a deleted project's keys here, then make every edge reload all keys."""
    for key_id in key_ids:
        state.keys.remove(key_id)
    await publish(state, {"project_id": project_id})


async def announce_project(
    state: EdgeState, session: AsyncSession, project_id: str | None, subject: str
) -> None:
    """Apply a committed change of a project's settings or credentials here, then tell all edges.

    ``project_id`` None (a change across projects, e.g. rewrap): every edge reloads all.
    """
    if project_id is None:
        await publish(state, {}, subject)
        return
    await ProjectSync.refresh(state.projects, session, project_id)
    if subject == subjects.PROJECTS_CHANGED:  # a project's type is part of the endpoint cache
        await EndpointSync.refresh(state.endpoints, session, project_id)
        await ChannelSync.refresh(state.channels, session, project_id)
    await publish(state, {"project_id": project_id}, subject)
