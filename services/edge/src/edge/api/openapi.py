"""The edge's OpenAPI document, rewritten once so that it tells the truth about errors.

FastAPI's generated document promises a ``422`` ``HTTPValidationError`` on every
operation with parameters, which the edge never answers (``api/errors.py`` turns a
validation failure into a 400 in the surface's shape), and says nothing about the
errors a route does answer. ``install_openapi(app)`` replaces ``app.openapi`` with a
builder that, on the generated document:

- drops every response whose body is FastAPI's ``HTTPValidationError``;
- adds, where the route did not declare it, each status the operation can answer,
  with the error body of its surface (``SHAPES``: OpenAI's ``{"error": {...}}`` on
  ``/v1``, Anthropic's under ``/v1/messages``, seed 001's ``{ok: false, error, code}``
  on ``/api``, ``/admin`` and ``/console/api``, seed 003's ``{"error": "..."}`` on
  ``/channel/v1``); which statuses is decided by ``error_statuses``;
- hoists the ``$defs`` of request bodies declared with ``request_body`` into
  ``components/schemas``.

The schemathesis drill (``devtools.drills.d10_fuzz``) holds the edge to this document:
status codes, content types and bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

__all__ = ["SHAPES", "error_statuses", "install_openapi", "request_body"]

_OPENAI = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "attempts": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
_ANTHROPIC = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": "string"},
    },
}
_OK_SHAPED = {
    "type": "object",
    "required": ["ok", "error", "code"],
    "properties": {
        "ok": {"const": False},
        "error": {"type": "string"},
        "code": {"type": "string"},
        "attempts": {"type": "array", "items": {"type": "object"}},
    },
}
_CHANNEL = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

#: Path prefix -> (component name, schema) of the error body answered there; first match wins.
SHAPES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("/v1/messages", "AnthropicError", _ANTHROPIC),
    ("/v1/models", "OpenAIOrAnthropicError", {"anyOf": [_OPENAI, _ANTHROPIC]}),
    ("/v1/", "OpenAIError", _OPENAI),
    ("/api/v1/", "OpenAIError", _OPENAI),  # seed 002's gateways speak OpenAI
    ("/api/", "OkShapedError", _OK_SHAPED),
    ("/admin/", "OkShapedError", _OK_SHAPED),
    ("/console/api/", "OkShapedError", _OK_SHAPED),
    ("/channel/v1/", "ChannelError", _CHANNEL),
    ("/", "OpenAIError", _OPENAI),
)

_DESCRIPTIONS = {
    400: "Invalid request: malformed body, parameter or header",
    401: "Missing, unknown, revoked or expired key or token",
    403: "Missing scope, another project's key, or a spent budget",
    404: "No such resource or model",
    409: "Conflicts with an existing resource",
    413: "Body too large",
    422: "Refused by a guardrail or an output schema",
    429: "Rate limit or budget reached",
    500: "Internal error (the body carries the request id)",
    502: "Every provider attempt failed",
    503: "A service the request needs did not answer",
    504: "The provider did not answer in time",
    529: "Every provider is overloaded (Anthropic's status)",
}
#: Operations open without credentials.
_PUBLIC = {"/healthz", "/readyz", "/metrics", "/channel/v1/widget.js", "/console/api/login"}
#: Tags whose POST operations call a model through the router.
_MODEL_TAGS = {"chat", "embeddings", "messages", "responses", "ai-gateway", "gateway-api"}


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses ``method`` ``path`` can answer, from what the operation takes."""
    if method == "options":
        return {404}
    if path in {"/healthz", "/metrics"}:
        return set()
    statuses = {500, 503}
    if path not in _PUBLIC or path == "/console/api/login":
        statuses |= {400, 401, 403, 429}
    if "{" in path:
        statuses |= {400, 404}
    if "requestBody" in operation:
        statuses |= {400, 409, 413}
    tags = set(operation.get("tags", ()))
    if method == "post" and (tags & _MODEL_TAGS or path.startswith(("/channel/", "/v1/collec"))):
        statuses |= {400, 404, 422, 429, 502, 504}
    if path.startswith("/v1/messages"):
        statuses.add(529)
    if path == "/readyz":
        statuses = {503}
    return statuses


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body itself (``Proxy.read``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def _shape(path: str) -> tuple[str, dict[str, Any]]:
    return next((name, schema) for prefix, name, schema in SHAPES if path.startswith(prefix))


def _rewrite(doc: dict[str, Any]) -> dict[str, Any]:
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in [s for s, r in responses.items() if _is_validation_error(r)]:
                del responses[status]
            # A preflight's only error is the router's 404 for a URL it cannot match.
            name, schema = ("OpenAIError", _OPENAI) if method == "options" else _shape(path)
            for status in sorted(error_statuses(method, path, operation)):
                components.setdefault(name, schema)
                ref = {"schema": {"$ref": f"#/components/schemas/{name}"}}
                responses.setdefault(
                    str(status),
                    {"description": _DESCRIPTIONS[status], "content": {"application/json": ref}},
                )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                for def_name, definition in body["schema"].pop("$defs", {}).items():
                    if components.setdefault(def_name, definition) != definition:
                        raise ValueError(f"two different schemas are named {def_name}")
    for obsolete in ("HTTPValidationError", "ValidationError"):
        components.pop(obsolete, None)
    return doc


def _is_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def install_openapi(app: FastAPI) -> None:
    """Serve ``app``'s generated OpenAPI document rewritten by ``_rewrite`` (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    summary=app.summary,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
