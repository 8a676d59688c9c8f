"""The one place where any failure becomes an error body with the right status, in the shape of
the API that was called.

    /v1 (OpenAI)       {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
    /api and /admin    {"ok": false, "error": "<message>", "code": "<code>"}  (seed 001)

``OkShapedRoute`` is the route class of the ``/api`` and ``/admin`` routers: it
answers everything raised while handling one of their routes, dependencies
and body validation included, with ``ok_error_response``; unknown URLs and
methods under those prefixes get the same shape from the 404/405 handler.
Everything else takes OpenAI's shape.

Sources and how they map:

    GatewayError (any subclass)       its http_status / error_type / code / param
    RequestValidationError            400 invalid_request_error naming the field
    Starlette HTTPException 404       404 "Unknown request URL: <METHOD> <path>. ..." code unknown_url
    Starlette HTTPException 405       405 invalid_request_error, code method_not_allowed
    other HTTPException               its status, type invalid_request_error
                                      (the three above in seed 001's shape under /api/ and /admin/)
    anything else                     500 api_error with the request id (see ``internal_error``;
                                      caught by ``RequestContextMiddleware``, logged once)

``validation_error`` turns pydantic errors (from FastAPI or from parsing a
body against ``gateway_common.openai``) into an ``InvalidRequest``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.common.v1 import types_pb2
from gateway_common.errors import GatewayError, InvalidRequest

__all__ = [
    "OK_SHAPED_PREFIXES",
    "OkShapedRoute",
    "error_bytes",
    "error_response",
    "install_error_handlers",
    "internal_error_bytes",
    "ok_error_response",
    "validation_error",
]

#: Path prefixes whose errors take seed 001's ``{ok: false, error, code}`` shape.
OK_SHAPED_PREFIXES = ("/api/", "/admin/")

# FastAPI prefixes locations with where the value came from; the client only knows field names.
_SOURCES = {"body", "query", "path", "header", "cookie"}
# Pydantic names union branches in error locations ("str", "list[ContentPart]", ...).
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "bytes", "none"}


def error_bytes(
    *, message: str, type: str, param: str | None = None, code: str | None = None
) -> bytes:
    """The serialized OpenAI error object."""
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def error_response(err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    """The HTTP response for a ``GatewayError``.

    After a failover gave up, ``error.attempts`` lists each attempt (provider,
    deployment, status, code, message), an extra field that OpenAI SDKs ignore.
    """
    error: dict[str, Any] = {
        "message": err.message,
        "type": err.error_type,
        "param": err.param,
        "code": err.code,
    }
    if err.attempts:
        error["attempts"] = _attempts(err.attempts)
    body = orjson.dumps({"error": error})
    return Response(
        body, status_code=err.http_status, media_type="application/json", headers=headers
    )


def _attempts(attempts: Sequence[types_pb2.AttemptError]) -> list[dict[str, Any]]:
    return [
        {
            "provider": a.provider,
            "deployment": a.deployment,
            "status": a.http_status,
            "code": a.code,
            "message": a.message,
        }
        for a in attempts
    ]


def ok_error_response(err: GatewayError, *, status: int | None = None) -> Response:
    """Seed 001's ``{"ok": false, "error", "code"}`` for ``err``, with ``err``'s status unless
    ``status`` is given; after a failover gave up, also ``attempts`` (as on ``/v1``)."""
    payload: dict[str, Any] = {"ok": False, "error": err.message, "code": err.code}
    if err.attempts:
        payload["attempts"] = _attempts(err.attempts)
    return Response(
        orjson.dumps(payload),
        status_code=status or err.http_status,
        media_type="application/json",
    )


class OkShapedRoute(APIRoute):
    """An ``APIRoute`` whose failures, dependencies' included, answer in seed 001's shape.

    A subclass may override ``error_response`` to choose other statuses.
    """

    @staticmethod
    def error_response(err: GatewayError) -> Response:
        return ok_error_response(err)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        shape = self.error_response

        async def shaped(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as err:
                return shape(err)
            except RequestValidationError as exc:
                return shape(validation_error(exc.errors()))

        return shaped


def internal_error_bytes(request_id: str) -> bytes:
    """Body of a 500: nothing about the cause, only the id to quote to an operator."""
    return error_bytes(
        message=(
            "The server had an error while processing your request. "
            f"Please include the request ID {request_id} if you contact us."
        ),
        type="api_error",
        code="internal_error",
    )


def _is_field(segment: str | int) -> bool:
    if isinstance(segment, int):
        return True
    return not (segment in _TYPE_TAGS or "[" in segment or "-" in segment or segment[:1].isupper())


def _param(loc: Sequence[str | int]) -> str:
    path = ""
    for i, segment in enumerate(loc):
        if i == 0 and segment in _SOURCES:
            continue
        if not _is_field(segment):
            continue
        path += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if path else segment)
    return path


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    """One ``InvalidRequest`` for a list of pydantic error dicts, naming the first bad field.

    When one field failed several union branches, the most specific error
    (deepest location) wins, so a bad content part is named rather than
    "expected a string".
    """
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidRequest(
            f"We could not parse the JSON body of your request: {first['msg']}.",
            code="invalid_json",
        )
    top = first["loc"][:1]
    err = max((e for e in errors if e["loc"][:1] == top), key=lambda e: len(_param(e["loc"])))
    param = _param(err["loc"])
    if not param:
        return InvalidRequest(f"Invalid request body: {err['msg']}.", code="invalid_request_body")
    if err["type"] == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    kind = "type" if err["type"].endswith("_type") else "value"
    return InvalidRequest(
        f"Invalid {kind} for '{param}': {err['msg']}.", param=param, code=f"invalid_{kind}"
    )


def _unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        message = (
            f"Unknown request URL: {request.method} {request.url.path}. "
            "This route is not supported by this gateway."
        )
        code: str | None = "unknown_url"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    if request.url.path.startswith(OK_SHAPED_PREFIXES):
        body = orjson.dumps({"ok": False, "error": message, "code": code or "http_error"})
    else:
        body = error_bytes(message=message, type="invalid_request_error", code=code)
    return Response(body, exc.status_code, headers=exc.headers, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app`` (the 500 path lives in the middleware)."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        return _unknown_route(request, exc)
