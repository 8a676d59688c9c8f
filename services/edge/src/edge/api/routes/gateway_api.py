"""Seed 001's Gateway API: ``POST /api/{project_id}/{slug}`` and the dispatcher
``POST /api/{project_id}/chat/completions`` (scope ``chat``, ``ai_gateway`` projects).

A call names one of the project's endpoints (``edge.endpoints``): by the
path's slug, or by the body's ``endpoint`` on the dispatcher. Its body is

    {"message": "..."}  or  {"messages": [OpenAI chat messages]}   exactly one
    "stream": bool       honoured only if the endpoint has streaming enabled
    "session_id"         refused (400) until sessions are built
    "endpoint": slug     the dispatcher's only (and required there)

Steps, in seed 001's order (a step that refuses spares the later ones):

    auth          401 no / unknown / revoked / expired key; 403 a key of another
                  project ("Token does not belong to this project."); 403 no ``chat``
    (rate limit)  not built yet
    project type  400 unless the project is ``ai_gateway``
    endpoint      404 unknown or inactive slug (route 1 looks it up before reading
                  the body; the dispatcher after, since the slug is in it)
    body          413 too large; 400 malformed, naming the field
    prompt apply  [system prompt] + messages; the endpoint's model and params
    budget        422 with the budget's message (``Proxy.forward``: the worst case
                  is priced from the body being sent, so it comes after prompt apply)
    router call   with failover in the router; 502 when every attempt failed
                  (``attempts`` lists them)

The router call goes through ``Proxy.forward``, exactly as ``/v1`` does:
budgets, managed credentials, BYOK (``X-Provider-Key``), metrics, the
``x-switchyard-*`` headers; it names the endpoint (``CompleteRequest.endpoint``),
so usage by endpoint shows the slug.

Answers. Unary: ``{"ok": true, "id", "model", "content", "finish_reason",
"usage", "meta": {"request_id", "endpoint", "provider", "deployment",
"attempts"}}`` (+ ``generation_context`` when the project has it on), meta
equal to the response headers. Stream: OpenAI's SSE chunks exactly as on
``/v1``, the meta in the headers. Errors: ``{"ok": false, "error", "code"}``
(``GatewayApiRoute``), never OpenAI's shape.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from starlette.responses import Response, StreamingResponse

from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    InvalidRequest,
    NotFound,
    ProviderError,
)
from gateway_common.openai import ChatMessage
from gateway_common.telemetry import REQUEST_ID

from ...auth import KeyEntry
from ...endpoints import EndpointCache, EndpointView
from ..deps import EndpointsDep, ProjectChatKeyDep, ProxyDep, SettingsDep
from ..errors import OkShapedRoute, ok_error_response, validation_error
from ..proxy import Proxy

__all__ = [
    "ENDPOINT_HEADER",
    "DispatchCall",
    "EndpointCall",
    "GatewayApiAnswer",
    "GatewayApiError",
    "GatewayApiRoute",
    "router",
]

#: Response header naming the endpoint that served a call (next to ``x-switchyard-*``).
ENDPOINT_HEADER: Final = "x-switchyard-endpoint"
_GATEWAY_PROJECT: Final = "ai_gateway"


class GatewayApiRoute(OkShapedRoute):
    """Seed 001's statuses: a budget or credits refusal is 422, a provider failure 502."""

    @staticmethod
    def error_response(err: GatewayError) -> Response:
        status: int | None = None
        if isinstance(err, BudgetExceeded | CreditsExhausted):
            status = 422
        elif isinstance(err, ProviderError):
            status = 502
        return ok_error_response(err, status=status)


router = APIRouter(prefix="/api", tags=["gateway-api"], route_class=GatewayApiRoute)


class _Call(BaseModel):
    """What both routes accept; any other field is a 400 naming it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    message: str | None = Field(default=None, min_length=1, description="One user message.")
    messages: list[ChatMessage] | None = Field(
        default=None, min_length=1, description="The whole conversation (OpenAI messages)."
    )
    stream: bool = Field(default=False, description="Honoured if the endpoint streams.")
    session_id: str | None = Field(default=None, description="Not supported yet (400).")

    @model_validator(mode="after")
    def _one_input(self) -> _Call:
        if (self.message is None) == (self.messages is None):
            raise PydanticCustomError("one_input", "give exactly one of 'message' or 'messages'")
        return self

    def conversation(self) -> list[dict[str, Any]]:
        """The caller's messages as sent upstream (unknown message fields kept)."""
        if self.messages is None:
            return [{"role": "user", "content": self.message}]
        return [m.model_dump(mode="json", exclude_unset=True) for m in self.messages]


C = TypeVar("C", bound=_Call)


class EndpointCall(_Call):
    """Body of ``POST /api/{project_id}/{slug}``."""


class DispatchCall(_Call):
    """Body of ``POST /api/{project_id}/chat/completions``: the slug is ``endpoint``."""

    endpoint: str = Field(min_length=1, max_length=64, description="The endpoint's slug.")


class GatewayApiUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class GatewayApiMeta(BaseModel):
    """Who served the call; equal to the ``x-switchyard-*`` / ``x-request-id`` headers."""

    request_id: str
    endpoint: str
    provider: str
    deployment: str
    attempts: int


class GatewayApiAnswer(BaseModel):
    """A unary answer (seed 001)."""

    ok: bool = True
    id: str
    model: str
    content: str | None
    finish_reason: str | None
    usage: GatewayApiUsage
    meta: GatewayApiMeta
    generation_context: dict[str, Any] | None = Field(
        default=None, description="Priced line items, when the project has them on."
    )


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(BaseModel):
    """The fields of an OpenAI chat completion this API reads (the rest is dropped); lenient
    about nulls, since a provider's answer that reached here was already a success."""

    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: GatewayApiUsage | None = None
    generation_context: dict[str, Any] | None = None


def _project_type(endpoints: EndpointCache, project_id: str) -> None:
    """400 unless the project is an ``ai_gateway`` project (unknown yet: the lookup decides)."""
    kind = endpoints.project_type(project_id)
    if kind is not None and kind != _GATEWAY_PROJECT:
        raise InvalidRequest(
            f"This project is of type '{kind}'; the Gateway API serves {_GATEWAY_PROJECT} "
            "projects only.",
            code="wrong_project_type",
        )


def _endpoint(endpoints: EndpointCache, project_id: str, slug: str) -> EndpointView:
    found = endpoints.get(project_id, slug)
    if found is None:
        raise NotFound(
            "No active endpoint with this slug in this project.", code="endpoint_not_found"
        )
    return found


def _parse(raw: bytes, schema: type[C]) -> C:
    try:
        body = schema.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    if body.session_id is not None:
        raise InvalidRequest(
            "Sessions are not available on this gateway yet: 'session_id' is not supported. "
            "Send the whole conversation in 'messages'.",
            param="session_id",
            code="sessions_unsupported",
        )
    return body


def _answer(response: Response, slug: str) -> Response:
    """Seed 001's unary answer from the OpenAI completion ``Proxy.forward`` returned."""
    try:
        completion = _Completion.model_validate_json(bytes(response.body))
    except ValidationError:
        raise ProviderError("The provider's answer could not be read.") from None
    first = completion.choices[0] if completion.choices else _Choice()
    headers = {k: v for k, v in response.headers.items() if k.startswith("x-switchyard-")}
    answer = GatewayApiAnswer(
        id=completion.id or "",
        model=completion.model or "",
        content=first.message.content if first.message is not None else None,
        finish_reason=first.finish_reason,
        usage=completion.usage or GatewayApiUsage(),
        meta=GatewayApiMeta(
            request_id=REQUEST_ID.get(),
            endpoint=slug,
            provider=headers.get("x-switchyard-provider", ""),
            deployment=headers.get("x-switchyard-deployment", ""),
            attempts=int(headers.get("x-switchyard-attempts") or 0),
        ),
        generation_context=completion.generation_context,
    )
    payload = answer.model_dump()
    if answer.generation_context is None:
        del payload["generation_context"]
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


async def _call(
    request: Request,
    *,
    key: KeyEntry,
    endpoint: EndpointView,
    body: _Call,
    proxy: Proxy,
    max_messages: int,
) -> Response:
    """Prompt apply, then the router call through ``Proxy.forward``; the answer in seed 001's shape."""
    messages = body.conversation()
    total = len(messages) + (1 if endpoint.system_prompt else 0)
    if total > max_messages:
        raise InvalidRequest(
            f"Too many messages: {total}; the limit is {max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    stream = body.stream and endpoint.streaming_enabled
    response = await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=endpoint.model,
        body=endpoint.body(messages, stream=stream),
        stream=stream,
        key=key,
        max_output_tokens=endpoint.max_output_tokens,
        endpoint=endpoint.slug,
        endpoint_id=endpoint.endpoint_id,
    )
    if isinstance(response, StreamingResponse):
        response.headers[ENDPOINT_HEADER] = endpoint.slug
        return response
    answer = _answer(response, endpoint.slug)
    answer.headers[ENDPOINT_HEADER] = endpoint.slug
    return answer


class GatewayApiError(BaseModel):
    """Every error of the Gateway API (seed 001), plus a stable machine ``code``."""

    ok: bool = False
    error: str
    code: str
    attempts: list[dict[str, Any]] | None = Field(
        default=None, description="Each failed attempt, when failover gave up (502)."
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": GatewayApiAnswer,
        "description": "The answer; with stream (and streaming enabled): server-sent events",
    },
    **{
        status: {"model": GatewayApiError, "description": what}
        for status, what in (
            (400, "Invalid body, or not an ai_gateway project"),
            (401, "Missing, unknown, revoked or expired key"),
            (403, "Another project's key, or no chat scope"),
            (404, "No active endpoint with this slug"),
            (413, "Body too large"),
            (422, "Budget or credits refused the call"),
            (502, "The provider failed after failover"),
        )
    },
}


@router.post("/{project_id}/chat/completions", response_class=Response, responses=_RESPONSES)
async def call_dispatcher(
    project_id: str,
    request: Request,
    key: ProjectChatKeyDep,
    endpoints: EndpointsDep,
    proxy: ProxyDep,
    settings: SettingsDep,
) -> Response:
    """Call the project's endpoint named by the body's ``endpoint``."""
    _project_type(endpoints, project_id)
    body = _parse(await proxy.read_body(request), DispatchCall)
    endpoint = _endpoint(endpoints, project_id, body.endpoint)
    return await _call(
        request,
        key=key,
        endpoint=endpoint,
        body=body,
        proxy=proxy,
        max_messages=settings.max_messages,
    )


@router.post("/{project_id}/{slug}", response_class=Response, responses=_RESPONSES)
async def call_endpoint(
    project_id: str,
    slug: str,
    request: Request,
    key: ProjectChatKeyDep,
    endpoints: EndpointsDep,
    proxy: ProxyDep,
    settings: SettingsDep,
) -> Response:
    """Call the project's endpoint ``slug``."""
    _project_type(endpoints, project_id)
    endpoint = _endpoint(endpoints, project_id, slug)
    body = _parse(await proxy.read_body(request), EndpointCall)
    return await _call(
        request,
        key=key,
        endpoint=endpoint,
        body=body,
        proxy=proxy,
        max_messages=settings.max_messages,
    )
