"""Seed 001's Gateway API: ``POST /api/{project_id}/{slug}`` and the dispatcher
``POST /api/{project_id}/chat/completions`` (scope ``chat``, ``ai_gateway`` projects).

A call names one of the project's endpoints (``edge.endpoints``): by the
path's slug, or by the body's ``endpoint`` on the dispatcher. Its body is

    {"message": "..."}  or  {"messages": [OpenAI chat messages]}   at most one; none
                         only when the endpoint has a prompt_template
    "variables": {...}   fills the endpoint's prompt_template, checked by its input_schema
    "stream": bool       honoured only if the endpoint has streaming enabled
    "session_id"         resume a session (endpoints with ``sessions_enabled``;
                         ``edge.pipeline.history``)
    "endpoint": slug     the dispatcher's only (and required there)

This module is the surface only: auth (dependencies), project type, endpoint
lookup and body parsing, then ``edge.pipeline.run`` runs seed 001's steps in
their order (read its docstring: rate limit, per-request cap, guardrails, input
schema, prompt apply, provider call with the endpoint's fallbacks, output
checks), and the ``Outcome`` is shaped here:

    auth          401 no / unknown / revoked / expired key; 403 a key of another
                  project ("Token does not belong to this project."); 403 no ``chat``
    project type  400 unless the project is ``ai_gateway``
    endpoint      404 unknown or inactive slug (route 1 looks it up before reading
                  the body; the dispatcher after, since the slug is in it)
    rate limit    ``Proxy.rate_limit`` (``edge.pipeline.limits_step``): 403
                  ``model_not_allowed`` when the key's ``allowed_models`` lacks the
                  endpoint's model; 429 with ``Retry-After`` from the key's, project's
                  or endpoint's request limits; token limits reserve the worst case in
                  ``Proxy.forward`` once the prompt is built (429 then too)
    body          413 too large; 400 malformed, naming the field
    sessions      (in prompt apply) 400 ``invalid_session_id`` / ``sessions_disabled``, 404
                  ``session_not_found``; history fitted to the context window, the call's
                  turns stored before its answer reaches the client
    pipeline      422 ``max_request_tokens_exceeded``, ``guardrail_blocked`` (+ ``guardrail``:
                  name, type, index, direction, reason), ``input_schema_invalid`` (+ ``detail``: path,
                  reason), ``missing_variable``, budget / credits (``Proxy.forward``);
                  502 provider failure after failover and fallbacks (``attempts``, each
                  with its ``model``), ``output_schema_invalid`` (+ ``detail``)

Each router attempt goes through ``Proxy.forward``, exactly as ``/v1`` does:
budgets, managed credentials, BYOK (``X-Provider-Key``), metrics, the
``x-switchyard-*`` headers; it names the endpoint (``CompleteRequest.endpoint``),
so usage by endpoint shows the slug.

Answers. Unary: ``{"ok": true, "id", "model", "content", "finish_reason",
"usage", "meta": {"request_id", "endpoint", "provider", "deployment",
"attempts"}}`` (+ ``generation_context`` when the project has it on), meta
equal to the response headers; ``attempts`` counts every model's attempts, and
``model`` is the model that answered (a fallback's, when one did); with a
session, meta also has ``session_id``, ``session_created``, ``session_expired``,
``history_truncated``, ``turns_dropped`` (the id also in
``x-switchyard-session-id``, as on streams). Stream:
OpenAI's SSE chunks as on ``/v1`` (content redacted by output guardrails), the
meta in the headers; an error found before the first byte is answered with its
status and body, one found after (output schema, a guardrail block mid-stream)
ends the stream with ``data: {"error": {...}}`` and no ``[DONE]``. Errors:
``{"ok": false, "error", "code"}`` (``GatewayApiRoute``), never OpenAI's shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    GuardrailBlocked,
    InputSchemaInvalid,
    InvalidRequest,
    NotFound,
    OutputSchemaInvalid,
    ProviderError,
)
from gateway_common.openai import ChatMessage
from gateway_common.telemetry import REQUEST_ID

from ...auth import KeyEntry
from ...endpoints import EndpointCache, EndpointView
from ...pipeline import history
from ...pipeline import run as pipeline
from ...pipeline.call import Completion, GatewayCall, StreamShaper, UpstreamAnswer
from ...pipeline.fallbacks import ModelsFailed
from ...pipeline.limits_step import Admission
from ..deps import EndpointsDep, ProjectChatKeyDep, ProxyDep, StateDep
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
_ATTEMPTS_HEADER: Final = "x-switchyard-attempts"
_GATEWAY_PROJECT: Final = "ai_gateway"


def _error_payload(err: GatewayError) -> dict[str, Any]:
    """The structured extras of seed 001's error body: which guardrail, the validator's
    detail, each attempt's model."""
    extra: dict[str, Any] = {}
    if isinstance(err, GuardrailBlocked):
        extra["guardrail"] = {
            "name": err.guardrail,
            "type": err.guardrail_type,
            "direction": err.direction,
            "reason": err.reason,
            "index": err.index,
        }
    elif isinstance(err, InputSchemaInvalid | OutputSchemaInvalid):
        extra["detail"] = {"path": err.path, "reason": err.reason}
    if isinstance(err, ModelsFailed):
        extra["attempts"] = [
            attempt for model, failed in err.failures for attempt in _tried(model, failed)
        ]
    return extra


def _tried(model: str, failed: GatewayError) -> list[dict[str, Any]]:
    """One model's failed attempts, each naming the model (one entry when none were listed)."""
    if not failed.attempts:
        return [
            {
                "model": model,
                "status": failed.http_status,
                "code": failed.code,
                "message": failed.message,
            }
        ]
    return [
        {
            "model": model,
            "provider": a.provider,
            "deployment": a.deployment,
            "status": a.http_status,
            "code": a.code,
            "message": a.message,
        }
        for a in failed.attempts
    ]


class GatewayApiRoute(OkShapedRoute):
    """Seed 001's statuses: a budget or credits refusal is 422, a provider failure 502
    (also when every deployment was rate limited); plus the structured extras."""

    @staticmethod
    def error_response(err: GatewayError) -> Response:
        status: int | None = None
        if isinstance(err, BudgetExceeded | CreditsExhausted):
            status = 422
        elif isinstance(err, ProviderError) or err.attempts:
            status = 502
        response = ok_error_response(err, status=status)
        extra = _error_payload(err)
        if not extra:
            return response
        payload = {**orjson.loads(bytes(response.body)), **extra}
        return Response(
            orjson.dumps(payload), status_code=response.status_code, media_type="application/json"
        )


router = APIRouter(prefix="/api", tags=["gateway-api"], route_class=GatewayApiRoute)


class _Call(BaseModel):
    """What both routes accept; any other field is a 400 naming it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    message: str | None = Field(default=None, min_length=1, description="One user message.")
    messages: list[ChatMessage] | None = Field(
        default=None, min_length=1, description="The whole conversation (OpenAI messages)."
    )
    variables: dict[str, Any] | None = Field(
        default=None, description="Values of the endpoint's prompt_template placeholders."
    )
    stream: bool = Field(default=False, description="Honoured if the endpoint streams.")
    session_id: str | None = Field(
        default=None, description="Resume this session (a UUID from meta.session_id)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> _Call:
        if self.message is not None and self.messages is not None:
            raise PydanticCustomError("one_input", "give exactly one of 'message' or 'messages'")
        return self

    def conversation(self) -> tuple[dict[str, Any], ...]:
        """The caller's messages as sent upstream (unknown message fields kept)."""
        if self.messages is None:
            return () if self.message is None else ({"role": "user", "content": self.message},)
        return tuple(m.model_dump(mode="json", exclude_unset=True) for m in self.messages)


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
    return body


def _answer(completion: Completion, slug: str, extra_meta: Mapping[str, Any]) -> Response:
    """Seed 001's unary answer from the pipeline's ``Completion``."""
    headers = dict(completion.headers)
    answer = GatewayApiAnswer(
        id=completion.id,
        model=completion.model,
        content=completion.content,
        finish_reason=completion.finish_reason,
        usage=GatewayApiUsage.model_validate(dict(completion.usage)),
        meta=GatewayApiMeta(
            request_id=REQUEST_ID.get(),
            endpoint=slug,
            provider=headers.get("x-switchyard-provider", ""),
            deployment=headers.get("x-switchyard-deployment", ""),
            attempts=int(headers.get(_ATTEMPTS_HEADER) or 0),
        ),
        generation_context=None
        if completion.generation_context is None
        else dict(completion.generation_context),
    )
    payload = answer.model_dump()
    payload["meta"].update(extra_meta)
    if answer.generation_context is None:
        del payload["generation_context"]
    headers[ENDPOINT_HEADER] = slug
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


class _ProxyUpstream:
    """The pipeline's ``Upstream`` for one HTTP call: each attempt is a ``Proxy.forward``."""

    def __init__(
        self,
        proxy: Proxy,
        request: Request,
        key: KeyEntry,
        endpoint: EndpointView,
        admission: Admission,
    ) -> None:
        self._proxy = proxy
        self._request = request
        self._key = key
        self._endpoint = endpoint
        # Counted once by the route; a fallback attempt reuses it (its tokens are reserved by
        # the first attempt and settled once).
        self._admission = admission

    async def _forward(
        self, model: str, body: bytes, *, stream: bool, shaper: StreamShaper | None = None
    ) -> Response:
        if model != self._endpoint.model:  # a fallback: the key must be allowed to call it
            self._proxy.check_model(self._key, model)
        return await self._proxy.forward(
            self._request,
            router_pb2.OPERATION_CHAT_COMPLETIONS,
            model=model,
            body=body,
            stream=stream,
            key=self._key,
            shaper=shaper,
            max_output_tokens=self._endpoint.max_output_tokens,
            endpoint=self._endpoint.slug,
            endpoint_id=self._endpoint.endpoint_id,
            admission=self._admission,
        )

    async def check_budget(self, model: str, body: bytes) -> None:
        await self._proxy.check_budget(
            self._key,
            model=model,
            body=body,
            max_output_tokens=self._endpoint.max_output_tokens,
            endpoint_id=self._endpoint.endpoint_id,
        )

    async def complete(self, model: str, body: bytes) -> UpstreamAnswer:
        response = await self._forward(model, body, stream=False)
        return UpstreamAnswer(bytes(response.body), dict(response.headers))

    async def stream(self, model: str, body: bytes, shaper: StreamShaper | None) -> Response:
        return await self._forward(model, body, stream=True, shaper=shaper)


async def _call(
    request: Request,
    *,
    key: KeyEntry,
    endpoint: EndpointView,
    body: _Call,
    proxy: Proxy,
    env: pipeline.PipelineEnv,
    admission: Admission,
) -> Response:
    """The pipeline for ``body``, its ``Outcome`` in seed 001's shape."""
    call = GatewayCall(
        key=key,
        request_id=REQUEST_ID.get(),
        messages=body.conversation(),
        variables=body.variables,
        stream=body.stream,
        session_id=body.session_id,
    )
    outcome = await pipeline.run(
        call, endpoint, env, _ProxyUpstream(proxy, request, key, endpoint, admission)
    )
    answer = outcome.answer
    if isinstance(answer, Completion):
        if outcome.prior_attempts:
            attempts = int(answer.headers.get(_ATTEMPTS_HEADER) or 0) + outcome.prior_attempts
            answer = dataclasses.replace(
                answer, headers={**answer.headers, _ATTEMPTS_HEADER: str(attempts)}
            )
        response = _answer(answer, endpoint.slug, outcome.session_meta)
    else:
        response = answer
        response.headers[ENDPOINT_HEADER] = endpoint.slug
        if outcome.prior_attempts:
            attempts = int(response.headers.get(_ATTEMPTS_HEADER) or 0) + outcome.prior_attempts
            response.headers[_ATTEMPTS_HEADER] = str(attempts)
    if outcome.session_id is not None:
        response.headers[history.SESSION_HEADER] = outcome.session_id
    return response


async def _env(state: StateDep) -> pipeline.PipelineEnv:
    return pipeline.PipelineEnv(
        metrics=state.metrics,
        catalog=state.catalog,
        max_messages=state.settings.max_messages,
        sessions=state.sessions,
    )


class GatewayApiError(BaseModel):
    """Every error of the Gateway API (seed 001), plus a stable machine ``code``."""

    ok: bool = False
    error: str
    code: str
    guardrail: dict[str, Any] | None = Field(
        default=None,
        description="The guardrail that blocked: name, type, index, direction, reason.",
    )
    detail: dict[str, str] | None = Field(
        default=None, description="A schema failure: the failing path and the reason."
    )
    attempts: list[dict[str, Any]] | None = Field(
        default=None, description="Each failed attempt, when failover and fallbacks gave up (502)."
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
            (
                422,
                "Per-request token cap, budget or credits, guardrail, input schema, "
                "or a missing template variable",
            ),
            (429, "A rate limit refused the call (Retry-After: seconds until it admits)"),
            (502, "The provider failed after failover and fallbacks, or the output schema"),
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
    state: StateDep,
) -> Response:
    """Call the project's endpoint named by the body's ``endpoint``."""
    _project_type(endpoints, project_id)
    body = _parse(await proxy.read_body(request), DispatchCall)
    endpoint = _endpoint(endpoints, project_id, body.endpoint)
    admission = await proxy.rate_limit(request, key, endpoint=endpoint)
    return await _call(
        request,
        key=key,
        endpoint=endpoint,
        body=body,
        proxy=proxy,
        env=await _env(state),
        admission=admission,
    )


@router.post("/{project_id}/{slug}", response_class=Response, responses=_RESPONSES)
async def call_endpoint(
    project_id: str,
    slug: str,
    request: Request,
    key: ProjectChatKeyDep,
    endpoints: EndpointsDep,
    proxy: ProxyDep,
    state: StateDep,
) -> Response:
    """Call the project's endpoint ``slug``."""
    _project_type(endpoints, project_id)
    endpoint = _endpoint(endpoints, project_id, slug)
    admission = await proxy.rate_limit(request, key, endpoint=endpoint)
    body = _parse(await proxy.read_body(request), EndpointCall)
    return await _call(
        request,
        key=key,
        endpoint=endpoint,
        body=body,
        proxy=proxy,
        env=await _env(state),
        admission=admission,
    )
