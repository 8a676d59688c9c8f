"""The one place where any failure becomes an error body with the right status, in the shape of
the API that was called.

    /v1 (OpenAI)       {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
    /api, /admin and /console/api
                       {"ok": false, "error": "<message>", "code": "<code>"}  (seed 001)

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
body against ``gateway_common.openai``) into an ``InvalidRequest`` worded as
OpenAI words it: a wrong JSON type is ``invalid_type`` ("expected an integer,
but got a string"), a value out of a field's ``ge``/``le`` range is
``integer_below_min_value`` / ``decimal_above_max_value`` / ... naming the
bound and the value; ``param`` is the field's path.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
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
OK_SHAPED_PREFIXES = ("/api/", "/admin/", "/console/api/")

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
                count_rejection(request, err)
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
    # Union branch tags ("str", "list[ContentPart]", "function-after[...]"), discriminator
    # tags (class names) and keys of free-form maps (a logit_bias token id) name no field.
    return segment.isidentifier() and segment not in _TYPE_TAGS and not segment[:1].isupper()


def _param(loc: Sequence[str | int]) -> str:
    if "[key]" in loc:  # a bad key of a map: the param is the map, the key goes in the message
        loc = loc[: loc.index("[key]") - 1]
    path = ""
    for i, segment in enumerate(loc):
        if i == 0 and segment in _SOURCES:
            continue
        if not _is_field(segment):
            continue
        path += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if path else segment)
    return path


#: A pydantic type error -> the JSON type it expected, in OpenAI's words.
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a decimal",
    "float_parsing": "a decimal",
    "decimal_type": "a decimal",
    "decimal_parsing": "a decimal",
    "string_type": "a string",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
#: A pydantic bound error -> (its context key, OpenAI's wording, operator, code suffix).
_BOUNDS = {
    "greater_than_equal": ("ge", "below minimum value", ">=", "below_min_value"),
    "greater_than": ("gt", "below minimum value", ">", "below_min_value"),
    "less_than_equal": ("le", "above maximum value", "<=", "above_max_value"),
    "less_than": ("lt", "above maximum value", "<", "above_max_value"),
}
_MAX_ECHO = 64


def _json_kind(value: object) -> str | None:
    """What a JSON value is, as OpenAI says it ("a string", "an integer", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float | Decimal):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return None


def _number(value: object) -> str:
    """A bound or an input as a client would write it: ``2`` for 2.0, ``2.5``, ``-100``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    text = str(value)
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "..."


def _type_error(param: str, errors: Sequence[Any]) -> InvalidRequest:
    """OpenAI's "Invalid type for 'p': expected X, but got Y instead." for ``errors`` of one
    field (several when it is a union: each branch's expected type is named)."""
    expected: list[str] = []
    for e in errors:
        # A custom type error's message is its expectation ("expected a string or ...").
        name = _EXPECTED.get(e["type"]) or e["msg"].removeprefix("expected ")
        if name not in expected:
            expected.append(name)
    got = _json_kind(errors[0]["input"])
    tail = f", but got {got} instead" if got else ""
    return InvalidRequest(
        f"Invalid type for '{param}': expected {' or '.join(expected)}{tail}.",
        param=param,
        code="invalid_type",
    )


def _bound_error(param: str, err: Any) -> InvalidRequest:
    """OpenAI's "Invalid 'p': integer below minimum value. Expected a value >= 1, but got -5
    instead." (``integer_below_min_value``; "decimal" for a number field)."""
    key, words, op, suffix = _BOUNDS[err["type"]]
    bound, value = err["ctx"][key], err["input"]
    integer = isinstance(bound, int) and not isinstance(value, float | Decimal)
    kind = "integer" if integer else "decimal"
    return InvalidRequest(
        f"Invalid '{param}': {kind} {words}. "
        f"Expected a value {op} {_number(bound)}, but got {_number(value)} instead.",
        param=param,
        code=f"{kind}_{suffix}",
    )


def _is_type_error(err: Any) -> bool:
    return err["type"] in _EXPECTED or (
        err["type"].endswith("_type") and err["msg"].startswith("expected ")
    )


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    """One ``InvalidRequest`` for a list of pydantic error dicts, naming the first bad field.

    When one field failed several union branches, the most specific error
    (deepest location) wins, so a bad content part is named rather than
    "expected a string". ``param`` is the field's path (``max_tokens``,
    ``messages[0].content``; a map's own path for a bad key or value of it,
    ``logit_bias``), and the message and code are OpenAI's:

        missing field          Missing required parameter: 'p'.            missing_required_parameter
        wrong JSON type        Invalid type for 'p': expected an integer,  invalid_type
                               but got a string instead.
        out of range           Invalid 'p': integer below minimum value.   integer_below_min_value,
                               Expected a value >= 1, but got -5 instead.  decimal_above_max_value, ...
        bad key of a map       Invalid key in 'p': <key>. <why>.           invalid_value
        anything else          Invalid value for 'p': <pydantic's words>.  invalid_value
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
    if err["type"] in _BOUNDS and "ctx" in err:
        return _bound_error(param, err)
    if "[key]" in err["loc"]:
        key = _number(err["loc"][err["loc"].index("[key]") - 1])
        return InvalidRequest(
            f"Invalid key in '{param}': {key}. {err['msg']}.", param=param, code="invalid_value"
        )
    if _is_type_error(err):
        branches = [e for e in errors if _param(e["loc"]) == param]
        if all(_is_type_error(e) for e in branches):
            return _type_error(param, branches)
        return _type_error(param, [err])
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


def count_rejection(request: Request, err: GatewayError) -> None:
    """Count a refusal in ``switchyard_edge_rejections_total`` (no-op before the lifespan ran)."""
    edge = getattr(request.app.state, "edge", None)
    if edge is not None:
        edge.metrics.count_rejection(err)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app`` (the 500 path lives in the middleware)."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        count_rejection(request, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        return _unknown_route(request, exc)
