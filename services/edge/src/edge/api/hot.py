"""The hot routes as raw ASGI: the routed create calls skip FastAPI's request machinery.

``POST /v1/chat/completions``, ``/v1/responses`` and ``/v1/embeddings`` are nearly all
of the edge's traffic. Through FastAPI each paid for the route scan, dependency solving
(``solve_dependencies``), the endpoint wrappers and the exception layers, about a fifth
of the edge's CPU per chat request (docs/benchmarks.md, "Candidate: the hot routes as
raw ASGI handlers"). ``HotRoutes`` sits just inside ``RequestContextMiddleware`` and
answers exactly those method and path pairs itself: it calls the route module's
``hot`` function, which resolves the route's dependencies by hand, in FastAPI's order
(authentication, then scope), and calls the same endpoint function the FastAPI route
does. What it raises is answered by the app's own exception handlers
(``api/errors.py``), so status codes and error bodies are the same either way.

The routes stay registered in FastAPI: the OpenAPI document still describes them, and
every other method, path (a trailing slash, a ``root_path``) or scope type goes through
FastAPI unchanged. ``scope["route"]`` is a ``Route`` of the same path template, so
metrics label these requests as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..state import EdgeState

__all__ = ["HotEndpoint", "HotRoutes", "hot_routes"]

#: A hot route's handler: the request and the edge's state in, the response out.
HotEndpoint = Callable[[Request, EdgeState], Awaitable[Response]]


def hot_routes(app: Starlette, endpoints: Mapping[str, HotEndpoint]) -> dict[str, Route]:
    """Each hot endpoint by the path of the FastAPI route named by its key.

    The path comes from the FastAPI route (``url_path_for``, which raises ``NoMatchFound``
    for a name no route has), so a hot path is always a documented one. The value is a
    ``Route`` for that path whose endpoint is the hot one: what ``scope["route"]`` holds
    for the metrics label, and what ``HotRoutes`` calls.
    """
    routes: dict[str, Route] = {}
    for name, endpoint in endpoints.items():
        path = str(app.url_path_for(name))
        routes[path] = Route(path, endpoint, methods=["POST"], name=name)
    return routes


def _handler(
    handlers: Mapping[Any, Callable[..., Any]], exc: Exception
) -> Callable[..., Any] | None:
    """The app's handler for ``exc``: the first of its classes, most derived first."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class HotRoutes:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, Route]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        endpoint: HotEndpoint = route.endpoint
        request = Request(scope, receive, send)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            response = await endpoint(request, scope["app"].state.edge)
            await response(scope, receive, sender)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None or started:
                raise
            answer = handler(request, exc)
            if inspect.isawaitable(answer):
                answer = await answer
            await answer(scope, receive, sender)
            # As Starlette does: a reused exception instance would gather tracebacks.
            exc.__traceback__ = None
