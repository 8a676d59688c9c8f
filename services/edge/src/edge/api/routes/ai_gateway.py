"""Seed 002's AI-gateway paths: ``POST /api/v1/chat-completions`` and ``/api/v1/chat/completions``
(where the OpenAI SDK lands with ``base_url=.../api/v1``), scope ``chat``.

Mounted before the Gateway API's ``/api/{project_id}/{slug}`` so ``v1`` is never taken
for a project id. ``model`` must name a gateway of the caller's project (404 in OpenAI's
shape otherwise); errors take OpenAI's shape, as ``/v1`` does. The flow is
``api.gateway_call``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway_common.openai import ChatCompletionRequest

from ..deps import ChatCallDep, ProxyDep, StateDep
from ..gateway_call import find_gateway, serve_gateway
from ..openapi import request_body

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["ai-gateway"])


async def _serve(
    request: Request, key: ChatCallDep, proxy: ProxyDep, state: StateDep, *, seed: bool
) -> Response:
    raw, body = await proxy.read(request, ChatCompletionRequest, key)
    view = find_gateway(state.gateways, key, body.model)
    return await serve_gateway(request, proxy, key, view, raw, retriever=state.retriever, seed=seed)


@router.post(
    "/chat-completions",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(ChatCompletionRequest),
)
async def seed_chat_completion(
    request: Request, key: ChatCallDep, proxy: ProxyDep, state: StateDep
) -> Response:
    """Seed 002's path: a stream ends with ``data: [END]``."""
    return await _serve(request, key, proxy, state, seed=True)


@router.post(
    "/chat/completions",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(ChatCompletionRequest),
)
async def sdk_chat_completion(
    request: Request, key: ChatCallDep, proxy: ProxyDep, state: StateDep
) -> Response:
    """The OpenAI SDK's path under ``base_url=.../api/v1``: a stream ends with ``[DONE]``."""
    return await _serve(request, key, proxy, state, seed=False)
