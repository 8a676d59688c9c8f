"""Anthropic's Messages API (scope ``chat``): ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

A Messages request is translated to the OpenAI chat request the router routes
(``edge.anthropic.inbound``) and forwarded exactly as ``/v1/chat/completions``
is (``Proxy.forward``: budgets, ledger, failover, ``x-switchyard-*`` headers),
with ``MessageStream`` shaping the answer into a Message or Anthropic's events.
Every failure, authentication and body validation included, answers in
Anthropic's error shape (``AnthropicRoute``). Keys come as ``x-api-key`` or
``Authorization: Bearer``; ``anthropic-version`` and ``anthropic-beta`` are
accepted: on Anthropic-kind models the router's Anthropic adapter sends the client's
version on when it supports it (its own otherwise), and the beta features
(``to_chat(beta=..., version=...)``).

``generation_context`` is off on this surface unless the project turns it on
with its own setting, ``messages_generation_context`` (``Proxy.forward(surface=
"messages")``): Anthropic clients do not expect the field. When on, a Message
carries it as a top-level ``generation_context`` and a stream on its
``message_delta`` event (``MessageStream``).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import InvalidRequest, ModelNotFound
from gateway_common.tokens import chat_prompt_tokens, estimate

from ...anthropic import AnthropicRoute, CountTokensRequest, MessagesRequest, MessageStream, to_chat
from ..deps import CatalogDep, ChatCallDep, ProxyDep, SettingsDep
from ..openapi import request_body

__all__ = ["router"]

router = APIRouter(prefix="/v1/messages", tags=["messages"], route_class=AnthropicRoute)


def _check_size(count: int, limit: int) -> None:
    if count > limit:
        raise InvalidRequest(
            f"messages: too many messages: {count}; the limit is {limit}.", param="messages"
        )


@router.post(
    "", response_class=Response, response_model=None, openapi_extra=request_body(MessagesRequest)
)
async def create_message(
    request: Request, key: ChatCallDep, proxy: ProxyDep, settings: SettingsDep, catalog: CatalogDep
) -> Response:
    """Create a Message; ``"stream": true`` answers with Anthropic's server-sent events."""
    _, body = await proxy.read(request, MessagesRequest, key)
    _check_size(len(body.messages), settings.max_messages)
    native = catalog.anthropic_only(body.model)
    chat = to_chat(
        body,
        native=native,
        beta=request.headers.get("anthropic-beta"),
        version=request.headers.get("anthropic-version"),
        reasoning=catalog.reasons(body.model),
    )
    shaper = MessageStream(model=body.model, input_tokens=chat_prompt_tokens(chat, estimate))
    return await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=body.model,
        body=orjson.dumps(chat),
        stream=body.stream,
        key=key,
        shaper=shaper,
        max_output_tokens=body.max_tokens,
        surface="messages",
    )


@router.post(
    "/count_tokens",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(CountTokensRequest),
)
async def count_tokens(
    request: Request, key: ChatCallDep, proxy: ProxyDep, catalog: CatalogDep
) -> Response:
    """``{"input_tokens": N}``: the gateway's count of the prompt, as the model would see it
    through the translation (an estimate: no provider is called)."""
    _, body = await proxy.read(request, CountTokensRequest, key)
    if not catalog.knows(body.model):
        raise ModelNotFound(f"model: {body.model}", param="model")
    chat = to_chat(body, native=catalog.anthropic_only(body.model))
    count = chat_prompt_tokens(chat, estimate)
    return Response(orjson.dumps({"input_tokens": count}), media_type="application/json")
