"""Anthropic's error shape and statuses for the Messages surface.

    {"type": "error", "error": {"type": "<kind>", "message": "..."}, "request_id": "..."}

Our taxonomy (``gateway_common.errors``) maps by status onto Anthropic's kinds:

    400, 422 (guardrail, schema)   400 invalid_request_error
    401                            401 authentication_error
    403 (scope, allowed models)    403 permission_error
    403 credits exhausted          402 billing_error (Anthropic's own "credit balance" status)
    429 budget exceeded            400 invalid_request_error: what Anthropic answers when a
                                       spend limit is reached (not retried by the SDKs; a
                                       budget does not come back in seconds)
    404 (unknown model, URL)       404 not_found_error
    413                            413 request_too_large
    429 (rate limits, all          429 rate_limit_error (with retry-after when known)
         attempts rate limited)
    503 (router unreachable or     529 overloaded_error: the gateway shed the call,
         shedding load)                the SDK retries it
    504                            504 timeout_error
    anything else (502, 500)       500 api_error

``AnthropicRoute`` is the route class of the Messages router: whatever a
handler or its dependencies raise (auth, body validation included) answers in
this shape, as ``OkShapedRoute`` does for seed 001's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from gateway_common.errors import GatewayError, RateLimited
from gateway_common.telemetry import REQUEST_ID

from ..api.errors import validation_error

__all__ = [
    "ANTHROPIC_VERSION_HEADER",
    "AnthropicRoute",
    "AnthropicVersionRoute",
    "error_body",
    "error_event",
    "error_response",
    "status_and_type",
]

log = logging.getLogger(__name__)

_BY_STATUS = {
    400: (400, "invalid_request_error"),
    422: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    405: (405, "invalid_request_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}
_API_ERROR = (500, "api_error")
#: By our error ``code`` first (it survives the router's gRPC status, a class may not).
_BY_CODE = {
    "insufficient_quota": (400, "invalid_request_error"),
    "credits_exhausted": (402, "billing_error"),
}

#: The header every Anthropic client sends; on shared routes it asks for Anthropic's shapes.
ANTHROPIC_VERSION_HEADER = "anthropic-version"


def status_and_type(err: GatewayError) -> tuple[int, str]:
    """The status and Anthropic error ``type`` that ``err`` is answered with."""
    return _BY_CODE.get(err.code) or _BY_STATUS.get(err.http_status, _API_ERROR)


def error_body(err: GatewayError) -> dict[str, Any]:
    """The error object (without its status)."""
    _, kind = status_and_type(err)
    return {
        "type": "error",
        "error": {"type": kind, "message": err.message},
        "request_id": REQUEST_ID.get(""),
    }


def error_response(err: GatewayError) -> Response:
    """The HTTP response for ``err`` on the Messages surface."""
    status, _ = status_and_type(err)
    headers: dict[str, str] = {}
    if isinstance(err, RateLimited) and err.retry_after is not None:
        headers["retry-after"] = str(err.retry_after)
    if status == 529:
        headers["x-should-retry"] = "true"
    return Response(
        orjson.dumps(error_body(err)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_event(err: GatewayError) -> bytes:
    """The ``error`` server-sent event that ends a failed stream."""
    return b"event: error\ndata: " + orjson.dumps(error_body(err)) + b"\n\n"


class AnthropicRoute(APIRoute):
    """An ``APIRoute`` whose failures, dependencies' included, answer in Anthropic's shape."""

    @staticmethod
    def shapes(request: Request) -> bool:
        """Whether ``request``'s failures take Anthropic's shape (here: always)."""
        return True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        shapes = self.shapes

        async def shaped(request: Request) -> Response:
            if not shapes(request):
                return await handler(request)
            try:
                return await handler(request)
            except GatewayError as err:
                return error_response(err)
            except RequestValidationError as exc:
                return error_response(validation_error(exc.errors()))
            except Exception:
                # A bug of ours: logged with its traceback, answered as Anthropic's api_error
                # (the middleware's last-resort 500 would be OpenAI's shape).
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                request_id = REQUEST_ID.get("")
                return error_response(
                    GatewayError(
                        "The server had an error while processing your request. "
                        f"Please include the request ID {request_id} if you contact us."
                    )
                )

        return shaped


class AnthropicVersionRoute(AnthropicRoute):
    """A route shared with OpenAI clients (``/v1/models``): Anthropic's error shape only for
    a request that carries ``anthropic-version``, OpenAI's otherwise."""

    @staticmethod
    def shapes(request: Request) -> bool:
        return ANTHROPIC_VERSION_HEADER in request.headers
