"""``api.hot``: the raw ASGI hot routes are exactly the documented routed create calls."""

from __future__ import annotations

import pytest
from starlette.routing import NoMatchFound

from edge.api.hot import HotRoutes, hot_routes
from edge.api.main import hot_endpoints
from edge.config import EdgeSettings
from edge.main import create_app


def test_hot_paths_come_from_the_fastapi_routes() -> None:
    app = create_app(EdgeSettings())
    paths = set(hot_routes(app, hot_endpoints()))
    assert paths == {"/v1/chat/completions", "/v1/responses", "/v1/embeddings"}
    assert any(m.cls is HotRoutes for m in app.user_middleware)


def test_a_hot_endpoint_without_a_documented_route_is_refused() -> None:
    app = create_app(EdgeSettings())
    with pytest.raises(NoMatchFound):
        hot_routes(app, {"no_such_route": hot_endpoints()["create_chat_completion"]})
