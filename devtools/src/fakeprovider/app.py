"""The fake provider's ASGI application (raw ASGI: it sits on the benchmark's hot path).

Routes::

    GET    /v1/models              the three mock models
    POST   /v1/chat/completions    deterministic chat answer, JSON or SSE; 400
                                   context_length_exceeded past the model's window (``windows``)
    POST   /v1/embeddings          deterministic vectors, float or base64
    POST   /v1/messages            Anthropic Messages mode (``messages``): a Message or its
                                   events; errors (injected ones too) in Anthropic's shape
    GET    /healthz                liveness, never faulted
    GET    /_fake/requests         what was received (``recorder``)
    DELETE /_fake/requests         forget it
    GET    /_fake/switches         the runtime fault toggles set (``faults.Switchboard``)
    PUT    /_fake/switches/<name>  set one: ``{"spec": "status=500"}`` (``""``: healthy)
    DELETE /_fake/switches[/<name>]  heal one, or all

Every ``/v1`` route also answers under ``/fault/<spec>/v1/...``. Order of work
for an API request: parse faults -> read and parse the body -> record ->
``delay_ms`` -> ``reset`` -> ``status`` -> the context window -> answer (``break_after`` and
``chunk_delay_ms`` apply while streaming).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fakeprovider import messages, replies, windows
from fakeprovider.config import FakeProviderSettings
from fakeprovider.faults import (
    Faults,
    FaultSpecError,
    Switchboard,
    drop_connection,
    split_fault_path,
)
from fakeprovider.recorder import RecordedRequest, RequestLog

__all__ = ["FakeProviderApp", "create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]
_DONE = b"data: [DONE]\n\n"
_SWITCHES = "/_fake/switches"
_MESSAGES = "/v1/messages"


class FakeProviderApp:
    """ASGI callable. State (request log, switches) lives on the instance, one per server."""

    def __init__(self, *, history: int = 1000) -> None:
        self.log = RequestLog(history)
        self.switches = Switchboard()
        self.prompt_cache = messages.PromptCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        if path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        elif path == "/_fake/requests":
            await self._admin(method, send)
        elif path == _SWITCHES or path.startswith(_SWITCHES + "/"):
            await self._switch(method, path[len(_SWITCHES) + 1 :], receive, send)
        else:
            await self._api(scope, receive, send, method, path)

    async def _admin(self, method: str, send: Send) -> None:
        if method == "GET":
            await _json(send, 200, {"requests": self.log.snapshot()})
        elif method == "DELETE":
            self.log.clear()
            await _json(send, 200, {"cleared": True})
        else:
            await _error(send, 405, f"method {method} not allowed")

    async def _switch(self, method: str, name: str, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if method == "GET" and not name:
            await _json(send, 200, {"switches": dict(self.switches.specs)})
        elif method == "DELETE":
            self.switches.clear(name or None)
            await _json(send, 200, {"switches": dict(self.switches.specs)})
        elif method == "PUT" and name:
            try:
                body = orjson.loads(raw or b"null")
                spec = body.get("spec") if isinstance(body, dict) else None
                if not isinstance(spec, str):
                    raise FaultSpecError('the body must be {"spec": "<fault spec>"}')
                self.switches.set(name, spec)
            except (FaultSpecError, orjson.JSONDecodeError) as exc:
                await _error(send, 400, str(exc), code="bad_fault_spec")
                return
            await _json(send, 200, {"switches": dict(self.switches.specs)})
        else:
            await _error(send, 405, f"method {method} not allowed")

    async def _api(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = await _read_body(receive)
        try:
            spec, api_path = split_fault_path(path)
            faults = Faults.from_request(spec, headers, self.switches.specs)
        except FaultSpecError as exc:
            await _error(send, 400, str(exc), code="bad_fault_spec")
            return
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await _error(send, 400, "request body is not valid JSON")
                return
        entry = self.log.record(method, path, headers, body)
        if faults.delay_ms:
            await asyncio.sleep(faults.delay_ms / 1000)
        if faults.reset:
            entry.broken = True
            await drop_connection(send, receive)
            return
        extra = [(b"retry-after", faults.retry_after.encode())] if faults.retry_after else []
        if faults.status is not None:
            entry.status = faults.status
            message = f"fake provider: injected status {faults.status}"
            if api_path == _MESSAGES:
                payload = messages.error_body(faults.status, message)
                await _json(send, faults.status, payload, extra)
            else:
                await _error(send, faults.status, message, code="injected_fault", headers=extra)
            entry.completed = True
            return
        status = await self._route(method, api_path, body, entry, faults, extra, send, receive)
        entry.status = status

    async def _route(
        self,
        method: str,
        path: str,
        body: Any,
        entry: RecordedRequest,
        faults: Faults,
        extra: list[tuple[bytes, bytes]],
        send: Send,
        receive: Receive,
    ) -> int:
        """Answer one API request; return the HTTP status sent."""
        if path == "/v1/models":
            if method != "GET":
                return await _error(send, 405, f"method {method} not allowed")
            await _json(send, 200, replies.model_list(), extra)
        elif path == _MESSAGES and method == "POST":
            return await self._messages(body, entry, faults, extra, send, receive)
        elif path not in ("/v1/chat/completions", "/v1/embeddings"):
            return await _error(send, 404, f"no route {path}", code="not_found")
        elif method != "POST":
            return await _error(send, 405, f"method {method} not allowed")
        elif not isinstance(body, dict):
            return await _error(send, 400, "request body must be a JSON object")
        elif path == "/v1/chat/completions" and not isinstance(body.get("messages"), list):
            return await _error(send, 400, "'messages' must be an array", code="invalid_value")
        elif path == "/v1/chat/completions" and (too_long := windows.overflow(body)):
            return await _error(
                send, 400, too_long, code="context_length_exceeded", param="messages"
            )
        else:
            streaming = path == "/v1/chat/completions" and bool(body.get("stream"))
            try:
                if path == "/v1/embeddings":
                    payload: Any = replies.embeddings(body)
                elif streaming:
                    payload = replies.chat_chunks(body)
                else:
                    payload = replies.chat_completion(body)
            except ValueError as exc:
                return await _error(send, 400, str(exc), code="invalid_value")
            if streaming:
                entry.stream = True
                frames = [b"data: " + chunk + b"\n\n" for chunk in payload]
                await _stream(send, receive, entry, [*frames, _DONE], faults, extra)
                return 200
            await _json(send, 200, payload, extra)
        entry.completed = True
        return 200

    async def _messages(
        self,
        body: Any,
        entry: RecordedRequest,
        faults: Faults,
        extra: list[tuple[bytes, bytes]],
        send: Send,
        receive: Receive,
    ) -> int:
        """Answer ``POST /v1/messages`` as Anthropic would (see ``messages``)."""
        problem = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            problem = "messages: Field required"
        elif not isinstance(body.get("max_tokens"), int):
            problem = "max_tokens: Field required"
        if problem is not None:
            await _json(send, 400, messages.error_body(400, problem), extra)
            return 400
        if body.get("stream"):
            entry.stream = True
            frames = messages.message_events(body, self.prompt_cache)
            await _stream(send, receive, entry, frames, faults, extra)
            return 200
        await _json(send, 200, messages.message(body, self.prompt_cache), extra)
        entry.completed = True
        return 200


def create_app(settings: FakeProviderSettings) -> FakeProviderApp:
    """Composition root: a fresh app with its own request log."""
    return FakeProviderApp(history=settings.history)


async def _stream(
    send: Send,
    receive: Receive,
    entry: RecordedRequest,
    frames: list[bytes],
    faults: Faults,
    extra: list[tuple[bytes, bytes]],
) -> None:
    """Send the SSE ``frames`` (a chat stream's end with ``[DONE]``), honouring
    ``break_after``/``chunk_delay_ms``.

    Without those faults the whole stream goes out in one write: the fastest path,
    and the client still parses one event per chunk. With them, events go out one
    by one while a watcher task waits for ``http.disconnect``, so a client that
    leaves mid-stream is recorded as ``disconnected``.
    """
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + extra})
    if faults.break_after is None and not faults.chunk_delay_ms:
        await send({"type": "http.response.body", "body": b"".join(frames)})
        entry.completed = True
        return
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        for index, frame in enumerate(frames):
            if index == faults.break_after:
                entry.broken = True
                await drop_connection(send, receive)
                return
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            if faults.chunk_delay_ms:
                await asyncio.sleep(faults.chunk_delay_ms / 1000)
            if watcher.done():
                entry.disconnected = True
                return
        await send({"type": "http.response.body", "body": b""})
        entry.completed = True
    finally:
        watcher.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(payload)
    headers = [_JSON, (b"content-length", str(len(data)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> int:
    """Send an OpenAI error object; return ``status`` so callers can ``return await``."""
    body = replies.error_body(status, message, code=code, param=param)
    await _json(send, status, body, headers)
    return status


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
