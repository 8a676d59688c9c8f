"""``build_api_router``: every route of the edge, mounted once.

Each route module owns its full path (OpenAI's are versioned under ``/v1``,
seed 001's Gateway API is under ``/api``), so a matched route's ``path_format``
is the template metrics label by.
"""

from __future__ import annotations

from fastapi import APIRouter

from .routes import (
    admin,
    channel,
    chat,
    console,
    embeddings,
    gateway_api,
    health,
    messages,
    models,
    responses,
)

__all__ = ["build_api_router"]


def build_api_router() -> APIRouter:
    """The edge's routes: ops endpoints at the root, OpenAI-compatible ones under ``/v1``,
    the Gateway API under ``/api``, the admin API under ``/admin``."""
    root = APIRouter()
    for module in (health, chat, embeddings, messages, models, responses, gateway_api, channel):
        root.include_router(module.router)
    root.include_router(admin.router)
    root.include_router(console.router)
    return root
