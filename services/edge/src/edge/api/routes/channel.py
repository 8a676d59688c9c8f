"""Seed 003's chat API for web sites: ``/channel/v1/chat``, ``/history``, ``/models``.

A call presents its channel's key in ``X-Channel-Key`` (or ``Authorization:
Bearer``); ``edge.channels`` says what a channel is. Steps of a chat, in order
(a failing step never pays for a later one):

    key        401 no key header; 401 wrong or malformed key
    enabled    403 site disabled
    body       413 over the edge's body limit; 400 naming the field (``message``
               at most 2,000 characters, ``session_id`` at most 255)
    quotas     429 per minute / per day, with Retry-After (the shared limiter, keyed
               by the channel)
    history    the session's turns (sessions, ``adopt``: a site-chosen name; expired
               -> a new thread)
    call       ``Proxy.forward``: credits and budgets reserved then settled (403
               credits exhausted), the router with failover, one usage event
    answer     ``{"reply", "session_id"}``; the user and assistant turns are stored
               before the client gets the answer. ``stream: true``: SSE frames
               ``data: {"delta": "..."}`` then ``data: {"done": true, "reply",
               "session_id"}``; a failure mid-stream ``data: {"error": "..."}``.

The model sees ``[system: system_prompt]``, ``[system: "Page context (JSON): {...}"]``
when the call has ``context``, the kept turns, then the message. Every error is
``{"error": "<message>"}``, seed 003's shape exactly; a provider failure is 500 with a
fixed message that names no provider.

The embeddable widget (``docs/widget.md``, served here as ``/widget.js``) calls
``/chat`` (streaming) and ``/history`` with ``X-Widget-Id`` (the channel's publishable id) and
``X-Visitor-Id`` (a random id the widget keeps in the visitor's localStorage) instead
of the key: 401 for an unknown id; 403 unless the call's ``Origin`` is one of the
channel's ``allowed_origins`` (browsers send it on every cross-origin fetch and a page
cannot forge it) and for ``/models``; 429 over ``widget_visitor_per_minute`` (the
shared limiter, counted before the channel's own quotas). Its sessions are the
visitor's own: ``history_id`` of (visitor, session id), so a widget caller never
reads a session the site's backend or another visitor named. CORS: a response gets
``Access-Control-Allow-Origin`` only when its ``Origin`` is in the channel's
``allowed_origins``; a preflight (which carries no key) is answered with CORS
headers only when some enabled channel allows its origin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    Unauthenticated,
)
from gateway_common.sessions_history import Turn
from gateway_common.telemetry import REQUEST_ID

from ...channels import CHANNEL_SCOPE, ChannelCache, ChannelView, history_id
from ...pipeline.ratelimit import RateLimits
from ...state import EdgeState
from ..deps import ProxyDep, RouterClientDep, StateDep
from ..errors import count_rejection
from ..middleware import RESPONSE_HEADERS
from ..proxy import Proxy

__all__ = ["ChannelChat", "ChannelRoute", "router"]

KEY_HEADER: Final = "x-channel-key"
WIDGET_HEADER: Final = "x-widget-id"
VISITOR_HEADER: Final = "x-visitor-id"
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_WIDGET_JS: Final = Path(__file__).resolve().parents[2] / "console_static" / "widget.js"
_MD_JS: Final = _WIDGET_JS.with_name("md.js")
_SSE_JS: Final = _WIDGET_JS.with_name("sse.js")
_EXPORT: Final = re.compile(r"^export ", re.MULTILINE)  # ES modules -> one classic script
MAX_MESSAGE: Final = 2000
MAX_SESSION_ID: Final = 255
_CORS_ORIGIN: Final = "channel_cors_origin"
_PROVIDER_FAILED: Final = "The AI provider failed to answer. Please try again later."
_CREDITS: Final = "Credits exhausted. Top up the channel's credits to continue."


def _error_response(err: GatewayError) -> Response:
    status = err.http_status
    message = err.message
    if isinstance(err, BudgetExceeded | CreditsExhausted):
        status, message = 403, _CREDITS
    elif isinstance(err, ProviderError) or err.attempts or status >= 500:
        status, message = 500, _PROVIDER_FAILED
    body = {"error": message}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _cors(request: Request, response: Response) -> Response:
    origin = getattr(request.state, _CORS_ORIGIN, None)
    if origin:
        response.headers["access-control-allow-origin"] = origin
        response.headers["vary"] = "Origin"
    return response


class ChannelRoute(APIRoute):
    """Seed 003's one error shape and statuses, and per-channel CORS on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def shaped(request: Request) -> Response:
            try:
                response = await handler(request)
            except GatewayError as err:
                count_rejection(request, err)
                response = _error_response(err)
            except RequestValidationError as exc:
                response = _error_response(_invalid(exc.errors()))
            return _cors(request, response)

        return shaped


router = APIRouter(prefix="/channel/v1", tags=["channels"], route_class=ChannelRoute)


class ChannelChat(BaseModel):
    """Body of ``POST /channel/v1/chat`` (seed 003)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    message: str = Field(min_length=1, max_length=MAX_MESSAGE, description="The user's message.")
    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID, description="Site's id.")
    context: dict[str, Any] | None = Field(
        default=None, description="page_url, page_title and free keys, shown to the model."
    )
    stream: bool = Field(default=False, description="Answer with server-sent events.")


def _invalid(errors: Any) -> InvalidRequest:
    first = next(iter(errors))
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return InvalidRequest(f"Invalid '{field}': {first.get('msg', 'invalid')}.", param=field)


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who calls: a channel's site (its key) or a visitor of its widget (``visitor`` set)."""

    view: ChannelView
    visitor: str | None = None

    def history_id(self, session_id: str) -> str:
        """The sessions id of ``session_id`` for this caller (a visitor's own namespace)."""
        name = session_id if self.visitor is None else f"widget\x00{self.visitor}\x00{session_id}"
        return history_id(self.view.project_id, name)


def _caller(request: Request, channels: ChannelCache) -> _Caller:
    widget_id = request.headers.get(WIDGET_HEADER)
    if widget_id is None:
        return _Caller(_channel(request, channels))
    view = channels.by_widget(widget_id.strip())
    if view is None:
        raise Unauthenticated("Invalid widget id.", code="invalid_widget_id")
    origin = request.headers.get("origin")
    if not origin or origin not in view.settings.allowed_origins:
        raise PermissionDenied("This origin may not use this widget.", code="origin_not_allowed")
    setattr(request.state, _CORS_ORIGIN, origin)
    if not view.settings.enabled:
        raise PermissionDenied("This site is disabled.", code="site_disabled")
    visitor = request.headers.get(VISITOR_HEADER, "")
    if not _VISITOR.match(visitor):
        raise InvalidRequest(
            "Invalid 'visitor_id': send 16 to 64 of A-Z a-z 0-9 _ - in X-Visitor-Id.",
            param="visitor_id",
        )
    return _Caller(view, visitor)


async def _visitor_limit(request: Request, state: EdgeState, caller: _Caller) -> None:
    if caller.visitor is None:
        return
    per_minute = caller.view.settings.widget_visitor_per_minute
    scope = f"visitor:{caller.view.project_id}:{caller.visitor}"
    admission = await state.limits.admit_only(RateLimits(per_minute=per_minute).limits(scope))
    if (error := admission.error()) is not None:
        setattr(request.state, RESPONSE_HEADERS, admission.headers())
        raise error


def _channel(request: Request, channels: ChannelCache) -> ChannelView:
    key = request.headers.get(KEY_HEADER)
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    if not key:
        raise Unauthenticated(
            "Missing API key. Send your channel key in the X-Channel-Key header.",
            code="missing_api_key",
        )
    view = channels.lookup(key.strip())
    if view is None:
        raise Unauthenticated("Invalid API key.", code="invalid_api_key")
    origin = request.headers.get("origin")
    if origin and origin in view.settings.allowed_origins:
        setattr(request.state, _CORS_ORIGIN, origin)
    if not view.settings.enabled:
        raise PermissionDenied("This site is disabled.", code="site_disabled")
    return view


def _messages(view: ChannelView, body: ChannelChat, turns: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if view.settings.system_prompt:
        messages.append({"role": "system", "content": view.settings.system_prompt})
    if body.context:
        context = orjson.dumps(body.context, option=orjson.OPT_SORT_KEYS).decode()
        messages.append({"role": "system", "content": f"Page context (JSON): {context}"})
    messages.extend({"role": t.role, "content": t.content} for t in turns)
    messages.append({"role": "user", "content": body.message})
    return messages


class _Turns:
    """Stores a chat's user and assistant turns once the reply is known (before the client)."""

    def __init__(self, state: Any, view: ChannelView, body: ChannelChat, sid: str) -> None:
        self._state, self._view, self._body, self._sid = state, view, body, sid

    async def store(self, reply: str) -> None:
        await self._state.sessions.append_turns(
            self._view.project_id,
            CHANNEL_SCOPE,
            self._sid,
            [Turn(role="user", content=self._body.message), Turn(role="assistant", content=reply)],
            request_id=REQUEST_ID.get(),
            ttl_seconds=self._view.settings.history_ttl_seconds,
        )


def _content(completion: bytes) -> str:
    try:
        parsed = orjson.loads(completion)
        return str(parsed["choices"][0]["message"].get("content") or "")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError("The provider's answer could not be read.") from None


class _ChatShaper:
    """``Proxy``'s ``Shaper``: OpenAI's answer in seed 003's shape, the turns stored first."""

    def __init__(self, turns: _Turns, session_id: str) -> None:
        self._turns, self._session_id = turns, session_id
        self._parts: list[str] = []

    async def body(self, body: bytes) -> bytes:
        reply = _content(body)
        await self._turns.store(reply)
        return orjson.dumps({"reply": reply, "session_id": self._session_id})

    async def frame(self, chunk: bytes) -> bytes:
        try:
            choices = orjson.loads(chunk).get("choices") or []
            delta = (choices[0].get("delta") or {}).get("content") if choices else None
        except (orjson.JSONDecodeError, AttributeError, IndexError):
            delta = None
        if not delta:
            return b""
        self._parts.append(delta)
        return b"data: " + orjson.dumps({"delta": delta}) + b"\n\n"

    async def finish(self) -> bytes:
        reply = "".join(self._parts)
        await self._turns.store(reply)
        done = {"done": True, "reply": reply, "session_id": self._session_id}
        return b"data: " + orjson.dumps(done) + b"\n\n"

    def error_frame(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": _PROVIDER_FAILED}) + b"\n\n"


async def _read(proxy: Proxy, request: Request) -> ChannelChat:
    raw = await proxy.read_body(request)
    try:
        return ChannelChat.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc.errors(include_url=False)) from None


@router.post("/chat", response_class=Response)
async def chat(request: Request, state: StateDep, proxy: ProxyDep) -> Response:
    """Send a visitor's message; the reply (Markdown) and the session id echoed."""
    caller = _caller(request, state.channels)
    view = caller.view
    body = await _read(proxy, request)
    model = view.settings.model
    if not model:
        raise PermissionDenied("This channel has no model configured.", code="no_model")
    await _visitor_limit(request, state, caller)
    principal = view.principal()
    admission = await proxy.rate_limit(request, principal)
    sid = caller.history_id(body.session_id)
    opened = await state.sessions.open_history(
        view.project_id,
        CHANNEL_SCOPE,
        sid,
        ttl_seconds=view.settings.history_ttl_seconds,
        adopt=True,
    )
    payload: dict[str, Any] = {"model": model, "messages": _messages(view, body, opened.turns)}
    if body.stream:
        payload["stream"] = True
    return await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=model,
        body=orjson.dumps(payload),
        stream=body.stream,
        key=principal,
        shaper=_ChatShaper(_Turns(state, view, body, sid), body.session_id),
        admission=admission,
    )


@router.get("/history", response_class=Response)
async def history(
    request: Request,
    state: StateDep,
    session_id: str = Query(min_length=1, max_length=MAX_SESSION_ID),
) -> Response:
    """A session's messages, oldest first; [] when it has none or has expired."""
    caller = _caller(request, state.channels)
    try:
        reply = await state.sessions.history(
            caller.view.project_id, CHANNEL_SCOPE, caller.history_id(session_id)
        )
        turns = reply.turns
    except NotFound:
        turns = []
    messages = [{"role": t.role, "content": t.content, "created_at": t.created_at} for t in turns]
    return Response(
        orjson.dumps({"session_id": session_id, "messages": messages}),
        media_type="application/json",
    )


@router.get("/models", response_class=Response)
async def models(request: Request, state: StateDep, client: RouterClientDep) -> Response:
    """Seed 003's table of models: name, id, context, max output, speed, best for."""
    view = _channel(request, state.channels)
    rows = [
        {
            "model": info.id,
            "model_id": info.id,
            "context": info.context_window,
            "max_output": info.max_output_tokens,
            "speed": f"~{info.speed_tps} TPS" if info.speed_tps else None,
            "speed_tps": info.speed_tps or None,
            "best_for": info.best_for or None,
            "current": info.id == view.settings.model,
        }
        for info in await client.list_models()
        if "chat" in info.capabilities
    ]
    return Response(orjson.dumps({"data": rows}), media_type="application/json")


_PREFLIGHT_HEADERS: Final = "Content-Type, X-Channel-Key, Authorization, X-Widget-Id, X-Visitor-Id"


@router.get("/widget.js", response_class=Response)
async def widget_js() -> Response:
    """The embeddable widget: md.js's sanitiser, sse.js's reader and widget.js in one
    classic script."""
    modules = (_MD_JS, _SSE_JS)
    shared = "\n".join(_EXPORT.sub("", p.read_text(encoding="utf-8")) for p in modules)
    widget = _WIDGET_JS.read_text(encoding="utf-8")
    script = f"(function () {{\n{shared}\n{widget}\n}})();\n"
    return Response(
        script,
        media_type="text/javascript",
        headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"},
    )


@router.options("/{path:path}", response_class=Response, status_code=204)
async def preflight(path: str, request: Request, state: StateDep) -> Response:
    """CORS preflight: allowed only for an origin some enabled channel lists."""
    origin = request.headers.get("origin", "")
    response = Response(status_code=204)
    if origin and state.channels.origin_allowed(origin):
        response.headers.update(
            {
                "access-control-allow-origin": origin,
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": _PREFLIGHT_HEADERS,
                "access-control-max-age": "600",
                "vary": "Origin",
            }
        )
    return response
