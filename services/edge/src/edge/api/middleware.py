"""Pure ASGI middleware wrapping every HTTP request (outermost of the app's own layers).

For each request, in order:

1. request id: ``X-Request-Id`` if the client sent a sane one (1-128 chars of
   ``[A-Za-z0-9._:-]``), else a new uuid4 hex; set in ``telemetry.REQUEST_ID``
   for the request's duration and echoed as the ``x-request-id`` response header;
2. start time in ``scope["state"]["started_at"]`` (``time.perf_counter``), from
   which routes measure the gateway's overhead;
3. the last-resort 500: an exception nothing else handled is logged once with
   its traceback (never bodies or keys) and answered as OpenAI's error object
   carrying the request id; it is not re-raised, so the server does not log it
   again;
4. metrics: count and duration by route template (``unmatched`` for unknown
   URLs, to keep label cardinality bounded);
5. the headers a route left in ``request.state`` under ``RESPONSE_HEADERS``
   (a ``dict[str, str]``: the rate-limit step's ``x-ratelimit-*`` and
   ``retry-after``) go on the response the request ends with, whatever made it
   (the route, an error handler, a stream), unless it already has the header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_common.telemetry import REQUEST_ID

from ..metrics import EdgeMetrics
from .errors import internal_error_bytes

__all__ = ["RESPONSE_HEADERS", "RequestContextMiddleware"]

#: ``scope["state"]`` key of the headers every response of the request carries (item 5).
RESPONSE_HEADERS = "response_headers"

log = logging.getLogger(__name__)

_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def _extra_headers(scope: Scope, message: Message) -> list[tuple[bytes, bytes]]:
    """The ``RESPONSE_HEADERS`` a route left for this response, those it lacks only."""
    extra: dict[str, str] | None = scope.get("state", {}).get(RESPONSE_HEADERS)
    if not extra:
        return []
    present = {name.lower() for name, _ in message.get("headers", ())}
    return [
        (name.encode(), value.encode())
        for name, value in extra.items()
        if name.encode() not in present
    ]


class RequestContextMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, metrics: EdgeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["started_at"] = started
        token = REQUEST_ID.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    *_extra_headers(scope, message),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not response_started:
                await self._internal_error(send_with_id, request_id)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(
                route=route.path_format if isinstance(route, Route) else "unmatched",
                method=scope["method"],
                status=status,
                seconds=time.perf_counter() - started,
            )
            REQUEST_ID.reset(token)

    @staticmethod
    async def _internal_error(send: Send, request_id: str) -> None:
        body = internal_error_bytes(request_id)
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
