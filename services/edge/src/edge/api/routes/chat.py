"""``POST /v1/chat/completions`` (scope ``chat``).

A ``model`` that is not a catalog model but is shaped as a gateway reference (a UUID or
``name:xxxx``) is served by that gateway of the caller's project (``api.gateway_call``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import InvalidRequest
from gateway_common.openai import ChatCompletionRequest

from ...gateways import looks_like_gateway
from ...state import EdgeState
from ..deps import ChatCallDep, ProxyDep, SettingsDep, StateDep, routed_caller
from ..gateway_call import find_gateway, serve_gateway
from ..openapi import request_body

__all__ = ["hot", "router"]

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post(
    "/chat/completions",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(ChatCompletionRequest),
)
async def create_chat_completion(
    request: Request, key: ChatCallDep, proxy: ProxyDep, settings: SettingsDep, state: StateDep
) -> Response:
    """Create a chat completion; ``"stream": true`` answers with server-sent events."""
    raw, body = await proxy.read(request, ChatCompletionRequest, key)
    if len(body.messages) > settings.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(body.messages)}; the limit is {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    if looks_like_gateway(body.model) and not state.catalog.knows(body.model):
        view = find_gateway(state.gateways, key, body.model)
        return await serve_gateway(
            request, proxy, key, view, raw, retriever=state.retriever, seed=False
        )
    return await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=body.model,
        body=raw,
        stream=body.stream,
        key=key,
        max_output_tokens=body.max_completion_tokens or body.max_tokens,
        choices=body.n or 1,
    )


async def hot(request: Request, state: EdgeState) -> Response:
    """``create_chat_completion`` with its dependencies resolved by hand (``api.hot``)."""
    key = await routed_caller(request, state, "chat")
    return await create_chat_completion(request, key, state.proxy, state.settings, state)
