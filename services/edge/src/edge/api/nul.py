"""Refusing a JSON body whose strings hold NUL (``\\u0000``), on every API of the edge.

PostgreSQL's ``text`` and ``jsonb`` cannot store NUL (SQLite can): a body carrying one
would be accepted, then fail where it is kept (a project's name, a stored response, a
session's turns) with a 5xx, after a provider may already have been paid. So the edge
refuses it up front with a 400 ``invalid_value``, before anything is stored or sent.

JSON can carry NUL only escaped, so the cost for every other body is one byte search
for ``\\u0000``; only a body holding that escape is parsed and walked (the escape may
be a literal ``\\\\u0000``, which is no NUL). Two places call ``refuse_nul``:

    Proxy.read_body     the bodies the edge reads raw: /v1's routed calls (the hot
                        routes included) and the Gateway API
    no_nul_in_body      a dependency of every FastAPI route (``api.main``): the bodies
                        FastAPI parses for a route's pydantic model (/admin, /console/api,
                        /v1/collections, ...)

The error is raised, not answered, so each route's class gives it the shape of its API
(OpenAI's error object, Anthropic's, or ``{ok: false, error, code}``; ``api.errors``).
"""

from __future__ import annotations

import orjson
from fastapi import params
from fastapi.routing import APIRoute
from starlette.requests import Request

from gateway_common.errors import InvalidRequest

__all__ = ["no_nul_in_body", "refuse_nul"]

MESSAGE = "Invalid body: strings may not contain the NUL character (\\u0000)."


def _holds_nul(body: bytes) -> bool:
    """Whether a string of the JSON ``body`` (a key or a value) holds NUL; a body that does
    not parse is left to the route's own parser and its error."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refuse_nul(body: bytes) -> None:
    """Raise a 400 ``invalid_value`` when a string of the JSON ``body`` holds NUL."""
    if b"\\u0000" in body and _holds_nul(body):
        raise InvalidRequest(MESSAGE, code="invalid_value")


async def no_nul_in_body(request: Request) -> None:
    """``refuse_nul`` for the body FastAPI has parsed for this route, if it parsed one.

    Only a route with a JSON body model (``body_field``, not a form) has had its body
    read by FastAPI before its dependencies run, so ``request.body()`` is the cached
    copy; any other route's body is left unread here (a raw route reads it itself,
    under the body-size limit, through ``Proxy.read_body``).
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    if isinstance(route.body_field.field_info, params.Form):
        return
    refuse_nul(await request.body())
