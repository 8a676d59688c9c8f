"""Composition root: ``create_app(settings)`` builds the FastAPI app; its lifespan builds the rest.

Lifespan, in order (an ``AsyncExitStack`` undoes it in reverse on shutdown):

    telemetry -> NATS connection -> DB engine -> key cache (loaded, then kept current
    by keys.changed.v1 and a periodic reload) -> gRPC channel to the router ->
    RouterClient + Proxy, SessionsClient (stored responses, over the same NATS
    connection) -> ``app.state.edge``

Nothing runs at import. Request handling order: ``RequestContextMiddleware``
(request id, metrics, last-resort 500) -> routing -> dependencies (auth,
then scope) -> handler (body size, body check, router call) -> the error
handlers of ``api/errors.py`` for anything raised on the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI

from gateway_common import db, nats, telemetry
from gateway_common.grpc import channel_options

from .api.errors import install_error_handlers
from .api.main import build_api_router
from .api.middleware import RequestContextMiddleware
from .api.proxy import Proxy
from .auth import KeyCache
from .config import EdgeSettings
from .keysync import KeySync
from .metrics import EdgeMetrics
from .router_client import RouterClient
from .sessions_client import SessionsClient
from .state import EdgeState

__all__ = ["create_app"]


async def _build_state(
    settings: EdgeSettings, metrics: EdgeMetrics, stack: AsyncExitStack
) -> EdgeState:
    tracer = telemetry.setup(
        service=settings.service_name,
        log_level=settings.log_level,
        otel_endpoint=settings.otel_endpoint,
    )
    stack.callback(telemetry.shutdown, tracer)

    nc = await nats.connect(settings.nats_url, name=settings.service_name)
    stack.push_async_callback(nc.close)

    engine = db.create_engine(settings.resolved_database_url())
    stack.push_async_callback(engine.dispose)

    keys = KeyCache(settings.secret_key.get_secret_value().encode())
    await stack.enter_async_context(
        KeySync(
            keys,
            db.make_sessionmaker(engine),
            nc,
            interval_s=settings.key_refresh_interval_s,
        )
    )

    channel = grpc.aio.insecure_channel(settings.router_addr, options=channel_options())
    stack.push_async_callback(channel.close)
    router = RouterClient(channel, timeout_s=settings.request_timeout_s)
    return EdgeState(
        settings=settings,
        metrics=metrics,
        nats=nc,
        engine=engine,
        keys=keys,
        router=router,
        sessions=SessionsClient(nc),
        proxy=Proxy(router, metrics, max_body_bytes=settings.max_body_bytes),
    )


_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Probes and scrapes are not worth a span."""
    return scope.get("path") in _UNTRACED_PATHS


def create_app(settings: EdgeSettings) -> FastAPI:
    """The edge's ASGI app; clients and stores come to life in its lifespan."""
    metrics = EdgeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.edge = await _build_state(settings, metrics, stack)
            yield

    app = FastAPI(
        title="Switchyard edge",
        summary="OpenAI-compatible gateway API",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # HTTP spans only, on the tracer provider telemetry.setup installs; Prometheus
        # covers metrics and the middleware logs errors, so FastAPI need not.
        telemetry={
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _untraced,
        },
    )
    install_error_handlers(app)
    app.include_router(build_api_router())
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
