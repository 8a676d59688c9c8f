"""``build_api_router``: every route of the edge, mounted once.

Each route module owns its full path (OpenAI's are versioned under ``/v1``,
seed 001's Gateway API is under ``/api``), so a matched route's ``path_format``
is the template metrics label by.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .hot import HotEndpoint
from .nul import no_nul_in_body
from .routes import (
    admin,
    ai_gateway,
    channel,
    chat,
    collections,
    console,
    embeddings,
    gateway_api,
    health,
    messages,
    models,
    responses,
)

__all__ = ["build_api_router", "hot_endpoints"]


def build_api_router() -> APIRouter:
    """The edge's routes: ops endpoints at the root, OpenAI-compatible ones under ``/v1``,
    the Gateway API under ``/api`` (seed 002's gateways under ``/api/v1``, mounted first), the admin API under ``/admin``."""
    # Every route refuses a JSON body holding NUL before its endpoint runs (``api.nul``).
    root = APIRouter(dependencies=[Depends(no_nul_in_body)])
    # ai_gateway's /api/v1/... before gateway_api's /api/{project_id}/{slug}.
    modules = (health, chat, embeddings, messages, models, responses, ai_gateway, gateway_api)
    for module in (*modules, channel):
        root.include_router(module.router)
    root.include_router(collections.router)
    root.include_router(admin.router)
    root.include_router(console.router)
    return root


def hot_endpoints() -> dict[str, HotEndpoint]:
    """The routed create calls ``api.hot`` serves without FastAPI's request machinery,
    by the name of the FastAPI route that documents each."""
    return {
        "create_chat_completion": chat.hot,
        "create_response": responses.hot,
        "create_embeddings": embeddings.hot,
    }
