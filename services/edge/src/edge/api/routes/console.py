"""The web console: static files at ``/console`` and its session routes at ``/console/api``.

The console's pages call the admin API (``/admin/*``) with the session cookie, so the
admin rules (``admin.base``) decide everything; the routes here only sign in and out,
say who is signed in, and list the catalog's models (``/v1/models`` wants a gateway key,
the operator has none). Session and CSRF: ``edge.console``.

Knowledge collections are served to keys under ``/v1/collections`` (scopes
``collections:read``/``write``, which neither the admin token nor an admin key has), so
``/admin/projects/{id}/collections`` serves the same ``RagClient`` calls, with the same
bodies and answers, to an admin caller of that project (a console session or a bearer;
writes from a session need the CSRF token like every admin write).
"""

from __future__ import annotations

import hmac
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from gateway_common import subjects, telemetry
from gateway_common.errors import InvalidRequest, NotFound, Unauthenticated

from ... import console
from ...auth import require_scope
from ...documents import DocumentCreate, read_upload
from ...store import console_logouts
from ..deps import RouterClientDep, StateDep
from ..openapi import request_body
from .admin.base import (
    ERROR_RESPONSES,
    AdminRoute,
    ProjectCallerDep,
    SessionDep,
    load_project,
    principal_of_session,
    publish,
)
from .collections import (
    Chunk,
    Collection,
    CollectionCreate,
    CollectionList,
    Deleted,
    Document,
    DocumentList,
    QueryBody,
    QueryResult,
)
from .models import _to_model

__all__ = ["router"]

router = APIRouter(tags=["console"], route_class=AdminRoute, responses=ERROR_RESPONSES)

_STATIC = resources.files("edge") / "console_static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
#: Headers of every console file: no framing, no inline script, nothing from elsewhere.
_FILE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _sessions(request: Request) -> console.ConsoleSessions:
    sessions: console.ConsoleSessions = request.app.state.console
    return sessions


SessionsDep = Annotated[console.ConsoleSessions, Depends(_sessions)]


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="Admin token or admin key.")


class Me(BaseModel):
    operator: bool
    project_id: str | None
    key_id: str | None
    csrf: str
    expires: int


@router.get("/console", include_in_schema=False)
async def console_root() -> Response:
    return RedirectResponse("/console/", status_code=307)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookies(response: Response, request: Request, value: str, csrf: str) -> None:
    secure = _secure(request)
    common: dict[str, Any] = {"samesite": "strict", "secure": secure, "path": "/"}
    response.set_cookie(
        console.COOKIE, value, max_age=console.SESSION_TTL_S, httponly=True, **common
    )
    response.set_cookie(console.CSRF_COOKIE, csrf, max_age=console.SESSION_TTL_S, **common)


@router.post("/console/api/login", response_model=Me)
async def login(body: Login, request: Request, state: StateDep, sessions: SessionsDep) -> Response:
    """Sign in with the admin token or an ``admin``-scope key: sets the session cookies."""
    if "application/json" not in request.headers.get("content-type", ""):
        raise InvalidRequest("Send the login as JSON.", code="json_required")
    operator = state.settings.admin_token
    token = body.token.strip()
    if operator is not None and hmac.compare_digest(
        token.encode(), operator.get_secret_value().encode()
    ):
        session, value = sessions.issue(operator_fp=sessions.fingerprint(token))
    else:
        entry = require_scope(await state.keys.resolve(token), "admin")
        session, value = sessions.issue(project_id=entry.project_id, key_id=entry.key_id)
    me = Me(
        operator=session.key_id is None,
        project_id=session.project_id,
        key_id=session.key_id,
        csrf=session.csrf,
        expires=session.expires,
    )
    response = JSONResponse(me.model_dump())
    _set_cookies(response, request, value, session.csrf)
    return response


def _current(request: Request, state: StateDep, sessions: SessionsDep) -> console.ConsoleSession:
    cookie = request.cookies.get(console.COOKIE)
    if not cookie:
        raise Unauthenticated("Not signed in to the console.")
    session = sessions.read(cookie)
    sessions.check_csrf(session, request.method, request.headers.get(console.CSRF_HEADER))
    principal_of_session(state, sessions, session)
    return session


CurrentDep = Annotated[console.ConsoleSession, Depends(_current)]


@router.get("/console/api/session", response_model=Me)
async def whoami(session: CurrentDep) -> Me:
    """Who is signed in (and the CSRF token the page echoes)."""
    return Me(
        operator=session.key_id is None,
        project_id=session.project_id,
        key_id=session.key_id,
        csrf=session.csrf,
        expires=session.expires,
    )


@router.post("/console/api/logout", status_code=204)
async def logout(
    request: Request,
    session: CurrentDep,
    sessions: SessionsDep,
    state: StateDep,
    db: SessionDep,
) -> Response:
    """End the session on every edge (CSRF token required) and clear its cookies."""
    sessions.revoke(session)
    await console_logouts.add_logout(
        session=db, sid=session.sid, expires_at=session.expires, now=int(time.time())
    )
    await publish(state, {"sid": session.sid}, subjects.CONSOLE_LOGOUT)
    response = Response(status_code=204)
    for name in (console.COOKIE, console.CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=_secure(request), samesite="strict")
    return response


@router.get("/console/api/models")
async def models(session: CurrentDep, client: RouterClientDep) -> dict[str, Any]:
    """Every model of the catalog with prices, context window and capabilities."""
    del session
    return {"data": [_to_model(i).model_dump() for i in await client.list_models()]}


# --- Knowledge collections for admin callers (the console) -------------------------------

_COLLECTIONS = "/admin/projects/{project_id}/collections"
_ONE = _COLLECTIONS + "/{collection_id}"


async def _project(project_id: str, caller: ProjectCallerDep, session: SessionDep) -> str:
    """``project_id`` if it exists and the caller may act on it (403/404 otherwise)."""
    await load_project(session, caller.principal, project_id)
    return project_id


ProjectDep = Annotated[str, Depends(_project)]


@router.post(_COLLECTIONS, status_code=status.HTTP_201_CREATED, response_model=Collection)
async def admin_create_collection(
    body: CollectionCreate, project: ProjectDep, caller: ProjectCallerDep
) -> Collection:
    """Create a collection in the project (409 ``collection_exists`` for a name in use)."""
    rag = caller.state.rag
    return Collection.of(
        await rag.create_collection(project, body.name, description=body.description)
    )


@router.get(_COLLECTIONS, response_model=CollectionList)
async def admin_list_collections(project: ProjectDep, caller: ProjectCallerDep) -> CollectionList:
    """The project's collections, newest first."""
    infos = await caller.state.rag.list_collections(project)
    return CollectionList(data=[Collection.of(info) for info in infos])


@router.delete(_ONE, response_model=Deleted)
async def admin_delete_collection(
    collection_id: str, project: ProjectDep, caller: ProjectCallerDep
) -> Deleted:
    """Delete a collection with its documents and chunks."""
    info = await caller.state.rag.delete_collection(project, collection_id)
    return Deleted(id=info.id, object="collection")


@router.post(
    _ONE + "/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=Document,
    response_model_exclude_none=True,
    openapi_extra=request_body(DocumentCreate),
)
async def admin_add_document(
    collection_id: str, request: Request, project: ProjectDep, caller: ProjectCallerDep
) -> Document:
    """Queue a document (JSON ``{name, text}`` or a .txt/.md/.pdf ``file`` upload)."""
    upload = await read_upload(request)
    info, created = await caller.state.rag.add_document(
        project,
        collection_id,
        upload.name,
        upload.text,
        api_key_id=caller.principal.key_id or "",
        request_id=telemetry.REQUEST_ID.get(),
    )
    return Document.of(info, created=created)


@router.get(_ONE + "/documents", response_model=DocumentList, response_model_exclude_none=True)
async def admin_list_documents(
    collection_id: str, project: ProjectDep, caller: ProjectCallerDep
) -> DocumentList:
    """The collection's documents with their ingestion status and progress."""
    infos = await caller.state.rag.list_documents(project, collection_id)
    return DocumentList(data=[Document.of(info) for info in infos])


@router.delete(_ONE + "/documents/{document_id}", response_model=Deleted)
async def admin_delete_document(
    collection_id: str, document_id: str, project: ProjectDep, caller: ProjectCallerDep
) -> Deleted:
    """Delete a document and its chunks."""
    info = await caller.state.rag.delete_document(project, collection_id, document_id)
    return Deleted(id=info.id, object="collection.document")


@router.post(_ONE + "/query", response_model=QueryResult)
async def admin_query_collection(
    collection_id: str, body: QueryBody, project: ProjectDep, caller: ProjectCallerDep
) -> QueryResult:
    """The ``top_k`` best chunks of the collection's ready documents for ``query``."""
    reply = await caller.state.rag.query(
        project,
        collection_id,
        body.query,
        top_k=body.top_k,
        min_score=body.min_score,
        request_id=telemetry.REQUEST_ID.get(),
    )
    return QueryResult(data=[Chunk(**chunk.model_dump()) for chunk in reply.chunks])


# Last: the catch-all must not shadow /console/api/*.
@router.get("/console/{name:path}", include_in_schema=False)
async def console_file(name: str) -> Response:
    """A console file (``index.html`` for the app's own paths)."""
    if name.startswith("api/"):
        raise NotFound("No such console route.", code="not_found")
    leaf = name.rsplit("/", 1)[-1]
    suffix = "." + leaf.rsplit(".", 1)[-1] if "." in leaf else ""
    if suffix not in _TYPES or "/" in name or leaf.startswith("."):
        leaf, suffix = "index.html", ".html"
    path = _STATIC / leaf
    if not path.is_file():
        raise NotFound("No such console file.", code="not_found")
    return FileResponse(str(path), media_type=_TYPES[suffix], headers=_FILE_HEADERS)
