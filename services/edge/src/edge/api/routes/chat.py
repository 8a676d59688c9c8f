"""``POST /v1/chat/completions`` (scope ``chat``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.openai import ChatCompletionRequest

from ..deps import ChatKeyDep, ProxyDep

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat/completions", response_class=Response, response_model=None)
async def create_chat_completion(request: Request, key: ChatKeyDep, proxy: ProxyDep) -> Response:
    """Create a chat completion; ``"stream": true`` answers with server-sent events."""
    raw, body = await proxy.read(request, ChatCompletionRequest)
    return await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=body.model,
        body=raw,
        stream=body.stream,
        key=key,
    )
