"""FastAPI dependencies as ``Annotated`` aliases; routes declare what they need by type.

    SettingsDep        EdgeSettings
    RouterClientDep    RouterClient
    ProxyDep           Proxy (the shared routed-endpoint flow)
    StateDep           EdgeState, for what no narrower dependency gives (health, admin, pipeline wiring)
    ApiKeyDep          KeyEntry of a valid key, any scope (401 otherwise)
    ChatKeyDep         ... that also carries the ``chat`` scope (403 otherwise)
    EmbeddingsKeyDep   ... that also carries the ``embeddings`` scope
    ResponsesKeyDep    ... that also carries the ``responses`` scope
    ChatCallDep        the caller of a routed call: as ChatKeyDep, or a pending
    EmbeddingsCallDep  bearer-passthrough principal (``edge.passthrough``) that
    ResponsesCallDep   ``Proxy.read`` confirms or refuses once it knows the model
    ProjectChatKeyDep  KeyEntry of a valid key of the path's ``{project_id}`` (403
                       "Token does not belong to this project." otherwise) with the
                       ``chat`` scope: the Gateway API's caller (seed 001)
    EndpointsDep       EndpointCache (the Gateway API's endpoints and project types)
    SessionsDep        SessionsClient (stored responses, session history)
    RagDep             RagClient (knowledge collections in the rag service)
    CollectionsReadKeyDep   KeyEntry with ``collections:read`` (or ``collections:write``)
    CollectionsWriteKeyDep  KeyEntry with ``collections:write``
    CatalogDep         PriceBook (the catalog's prices and limits: context windows)
    LimitsDep          LimitsStep (rate limits and ``allowed_models``)

Keys come from ``Authorization: Bearer`` or ``x-api-key`` (``auth.presented_key``).
Only the routed create endpoints take the ``*CallDep`` aliases; every other
route authenticates gateway keys only, so a provider key is a 401 there.

All are ``async def`` so FastAPI runs them inline rather than in a thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway_common.errors import PermissionDenied

from ..auth import WRONG_PROJECT, KeyEntry, Scope, UnknownKey, presented_key, require_scope
from ..config import EdgeSettings
from ..endpoints import EndpointCache
from ..pipeline.limits_step import LimitsStep
from ..pricebook import PriceBook
from ..rag_client import RagClient
from ..router_client import RouterClient
from ..sessions_client import SessionsClient
from ..state import EdgeState
from .proxy import Proxy

__all__ = [
    "ApiKeyDep",
    "CatalogDep",
    "ChatCallDep",
    "ChatKeyDep",
    "CollectionsReadKeyDep",
    "CollectionsWriteKeyDep",
    "EmbeddingsCallDep",
    "EmbeddingsKeyDep",
    "EndpointsDep",
    "LimitsDep",
    "ProjectChatKeyDep",
    "ProxyDep",
    "RagDep",
    "ResponsesCallDep",
    "ResponsesKeyDep",
    "RouterClientDep",
    "SessionsDep",
    "SettingsDep",
    "StateDep",
    "routed_caller",
]


async def get_state(request: Request) -> EdgeState:
    """The app's ``EdgeState`` (built by the lifespan)."""
    state: EdgeState = request.app.state.edge
    return state


StateDep = Annotated[EdgeState, Depends(get_state)]


async def get_settings(state: StateDep) -> EdgeSettings:
    return state.settings


async def get_router_client(state: StateDep) -> RouterClient:
    return state.router


async def get_sessions(state: StateDep) -> SessionsClient:
    return state.sessions


async def get_rag(state: StateDep) -> RagClient:
    return state.rag


async def get_catalog(state: StateDep) -> PriceBook:
    return state.catalog


async def get_proxy(state: StateDep) -> Proxy:
    return state.proxy


async def get_endpoints(state: StateDep) -> EndpointCache:
    return state.endpoints


async def get_limits(state: StateDep) -> LimitsStep:
    return state.limits


def _presented(request: Request) -> str:
    return presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))


async def authenticate(request: Request, state: StateDep) -> KeyEntry:
    """The caller's key, from ``Authorization: Bearer`` (else ``x-api-key``); raises
    ``Unauthenticated``."""
    return await state.keys.resolve(_presented(request))


async def authenticate_call(request: Request, state: StateDep) -> KeyEntry:
    """As ``authenticate``; a bearer that is no gateway key may yet be a passthrough caller."""
    token = _presented(request)
    try:
        return await state.keys.resolve(token)
    except UnknownKey:
        pending = state.passthrough.pending(token, request.headers)
        if pending is None:
            raise
        return pending


SettingsDep = Annotated[EdgeSettings, Depends(get_settings)]
RouterClientDep = Annotated[RouterClient, Depends(get_router_client)]
ProxyDep = Annotated[Proxy, Depends(get_proxy)]
SessionsDep = Annotated[SessionsClient, Depends(get_sessions)]
RagDep = Annotated[RagClient, Depends(get_rag)]
CatalogDep = Annotated[PriceBook, Depends(get_catalog)]
EndpointsDep = Annotated[EndpointCache, Depends(get_endpoints)]
LimitsDep = Annotated[LimitsStep, Depends(get_limits)]
ApiKeyDep = Annotated[KeyEntry, Depends(authenticate)]
CallerDep = Annotated[KeyEntry, Depends(authenticate_call)]


class _RequireScope:
    """Dependency: the caller's key, if it carries ``scope``."""

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope = scope

    async def __call__(self, key: ApiKeyDep) -> KeyEntry:
        return require_scope(key, self.scope)


ChatKeyDep = Annotated[KeyEntry, Depends(_RequireScope("chat"))]
EmbeddingsKeyDep = Annotated[KeyEntry, Depends(_RequireScope("embeddings"))]
ResponsesKeyDep = Annotated[KeyEntry, Depends(_RequireScope("responses"))]
CollectionsReadKeyDep = Annotated[KeyEntry, Depends(_RequireScope("collections:read"))]
CollectionsWriteKeyDep = Annotated[KeyEntry, Depends(_RequireScope("collections:write"))]


class _RequireCallScope(_RequireScope):
    """Dependency: the caller of a routed call (key or pending passthrough), if it has ``scope``."""

    async def __call__(self, key: CallerDep) -> KeyEntry:
        return require_scope(key, self.scope)


async def routed_caller(request: Request, state: EdgeState, scope: Scope) -> KeyEntry:
    """What ``_RequireCallScope(scope)`` resolves to, for the hot routes (``api.hot``)."""
    return require_scope(await authenticate_call(request, state), scope)


ChatCallDep = Annotated[KeyEntry, Depends(_RequireCallScope("chat"))]
EmbeddingsCallDep = Annotated[KeyEntry, Depends(_RequireCallScope("embeddings"))]
ResponsesCallDep = Annotated[KeyEntry, Depends(_RequireCallScope("responses"))]


async def authenticate_project_chat(project_id: str, key: ApiKeyDep) -> KeyEntry:
    """The caller's key if it is one of ``project_id``'s and carries ``chat``.

    Seed 001's order: 401 (no, unknown, revoked or expired key), then 403 for a
    key of another project (before anything about the project is looked up),
    then 403 for a missing scope.
    """
    if key.project_id != project_id:
        raise PermissionDenied(WRONG_PROJECT, code="wrong_project")
    return require_scope(key, "chat")


ProjectChatKeyDep = Annotated[KeyEntry, Depends(authenticate_project_chat)]
