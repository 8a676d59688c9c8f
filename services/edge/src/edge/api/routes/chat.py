"""``POST /v1/chat/completions`` (scope ``chat``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import InvalidRequest
from gateway_common.openai import ChatCompletionRequest

from ..deps import ChatCallDep, ProxyDep, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat/completions", response_class=Response, response_model=None)
async def create_chat_completion(
    request: Request, key: ChatCallDep, proxy: ProxyDep, settings: SettingsDep
) -> Response:
    """Create a chat completion; ``"stream": true`` answers with server-sent events."""
    raw, body = await proxy.read(request, ChatCompletionRequest, key)
    if len(body.messages) > settings.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(body.messages)}; the limit is {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
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
