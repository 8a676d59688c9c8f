"""Composition root: ``create_app(settings)`` builds the FastAPI app; its lifespan builds the rest.

Lifespan, in order (an ``AsyncExitStack`` undoes it in reverse on shutdown):

    telemetry -> NATS connection -> DB engine -> key cache (loaded, then kept current
    by keys.changed.v1 and a periodic reload) -> project cache (settings and sealed
    credentials; kept current by credentials.changed.v1 / projects.changed.v1 and the
    same periodic reload) -> endpoint cache (the Gateway API's endpoints and project
    types; endpoints.changed.v1 / projects.changed.v1, same reload) -> gateway cache
    (seed 002; gateways.changed.v1, same reload) -> console logouts (console.logout.v1,
    same reload: a session signed out on any edge is refused here) -> the catalog's
    copy (``PriceBook``) -> budget gate (prices, leases from billing; releases them
    on shutdown) and its ``BudgetSync`` (billing.budgets.changed.v1 drops an account's
    cached state) -> bearer passthrough (which models take a provider key as the
    bearer) -> the context-window check (the catalog's windows and tokenizers; encodings
    built on first use) -> rate limiter (JetStream counter streams declared) and its
    ``LimitsStep`` -> gRPC channel to the router -> RouterClient + Proxy, SessionsClient
    (stored responses) and RagClient (knowledge collections), over the same NATS
    connection -> ``app.state.edge``

Nothing runs at import. Request handling order: ``RequestContextMiddleware``
(request id, metrics, last-resort 500) -> ``HotRoutes`` (the routed create calls,
with their dependencies resolved by hand: ``api.hot``) or FastAPI's routing ->
dependencies (auth, then scope) -> handler (body size, body check, budget admission, router call) -> the error
handlers of ``api/errors.py`` for anything raised on the way.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI
from nats.aio.client import Client

from gateway_common import db, lean, migrate_proc, nats, telemetry, tokens
from gateway_common.grpc import channel_options
from gateway_common.metrics import DbPoolCollector

from .api.errors import install_error_handlers
from .api.gateway_call import RagRetriever
from .api.hot import HotRoutes, hot_routes
from .api.main import build_api_router, hot_endpoints
from .api.middleware import RequestContextMiddleware
from .api.openapi import install_openapi
from .api.proxy import Proxy
from .auth import KeyCache
from .budget import BudgetGate, BudgetPolicy
from .budget_client import BillingClient
from .budgetsync import BudgetSync
from .channels import ChannelCache, ChannelSync
from .config import EdgeSettings
from .console import ConsoleSessions
from .consolesync import ConsoleLogoutSync
from .context_window import ContextWindow
from .credentials import CredentialCipher
from .drain import Drain
from .endpoints import EndpointCache
from .endpointsync import EndpointSync
from .gateways import GatewayCache
from .gatewaysync import GatewaySync
from .keysync import KeySync, key_loader
from .metrics import EdgeMetrics
from .passthrough import Passthrough
from .pipeline.limits_step import LimitsStep
from .pipeline.ratelimit import LimitKind, RateLimiter
from .pricebook import PriceBook
from .projects import ProjectCache
from .projectsync import ProjectSync
from .rag_client import RagClient
from .router_client import RouterClient
from .sessions_client import SessionsClient
from .state import EdgeState
from .store import migrations_dir

__all__ = ["create_app"]


def _budget_gate(settings: EdgeSettings, nc: Client, prices: PriceBook) -> BudgetGate:
    """Budget admission: ``prices`` from the catalog file, leases from billing over ``nc``."""
    policy = BudgetPolicy(
        lease_multiple=settings.budget_lease_multiple,
        lease_slice=settings.budget_lease_slice,
        refusal_ttl_s=settings.budget_refusal_ttl_s,
        fail_open_s=settings.budget_fail_open_s,
        # Past the longest a request may run, its ticket belongs to a vanished request.
        ticket_timeout_s=settings.request_timeout_s + 30.0,
    )
    billing = BillingClient(nc, timeout_s=settings.budget_billing_timeout_s)
    edge_id = f"{settings.service_name}-{socket.gethostname()}-{os.getpid()}"
    return BudgetGate(billing, prices, edge_id=edge_id, policy=policy)


async def _build_state(
    settings: EdgeSettings,
    metrics: EdgeMetrics,
    drain: Drain,
    stack: AsyncExitStack,
    console: ConsoleSessions,
) -> EdgeState:
    tracer = telemetry.setup(
        service=settings.service_name,
        log_level=settings.log_level,
        otel_endpoint=settings.otel_endpoint,
        log_prompts=settings.log_prompts,
    )
    stack.callback(telemetry.shutdown, tracer)
    if tracer is not None:
        # Before the router channel exists: the instrumentor wraps the channel factory.
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

        instrumentor = GrpcAioInstrumentorClient()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer)

    nc = await nats.connect(settings.nats_url, name=settings.service_name)
    stack.push_async_callback(nc.close)

    if not settings.migrate_on_start:
        # The edge never migrates in-process (``python -m edge migrate`` does, or the
        # deploy/k8s migrate Job): without it, wait until that Job has brought the
        # schema to head, so this code never runs against an older one.
        # (in a child process, so the edge never imports Alembic).
        await migrate_proc.wait_for_head(
            url=settings.resolved_database_url(),
            migrations_dir=migrations_dir(),
            service=settings.service_name,
            timeout_s=settings.migrate_wait_s,
        )
    engine = db.create_engine(settings.resolved_database_url())
    stack.push_async_callback(engine.dispose)
    pool = DbPoolCollector(engine, service=settings.service_name)
    metrics.registry.register(pool)
    stack.callback(metrics.registry.unregister, pool)
    sessionmaker = db.make_sessionmaker(engine)

    keys = KeyCache(settings.secret_key.get_secret_value().encode(), load=key_loader(sessionmaker))
    await stack.enter_async_context(
        KeySync(
            keys,
            sessionmaker,
            nc,
            interval_s=settings.key_refresh_interval_s,
        )
    )

    projects = ProjectCache(
        CredentialCipher(
            settings.secret_key.get_secret_value().encode(), settings.previous_secrets()
        )
    )
    await stack.enter_async_context(
        ProjectSync(
            projects,
            sessionmaker,
            nc,
            interval_s=settings.key_refresh_interval_s,
        )
    )

    channels = ChannelCache(settings.secret_key.get_secret_value().encode())
    await stack.enter_async_context(
        ChannelSync(channels, sessionmaker, nc, interval_s=settings.key_refresh_interval_s)
    )

    endpoints = EndpointCache()
    await stack.enter_async_context(
        EndpointSync(
            endpoints,
            sessionmaker,
            nc,
            interval_s=settings.key_refresh_interval_s,
        )
    )

    gateways = GatewayCache()
    await stack.enter_async_context(
        GatewaySync(gateways, sessionmaker, nc, interval_s=settings.key_refresh_interval_s)
    )
    await stack.enter_async_context(
        ConsoleLogoutSync(console, sessionmaker, nc, interval_s=settings.key_refresh_interval_s)
    )

    # Raises CatalogError when the catalog cannot be read: no prices, no admission.
    catalog = PriceBook(
        settings.catalog_path,
        default_max_output_tokens=settings.budget_default_max_output_tokens,
    )
    budget = await stack.enter_async_context(_budget_gate(settings, nc, catalog))
    await stack.enter_async_context(BudgetSync(budget, nc))
    passthrough = Passthrough(catalog)
    limiter = RateLimiter(
        nc,
        metrics=metrics,
        timeout_s=settings.ratelimit_timeout_s,
        fail_closed=frozenset(LimitKind(k) for k in settings.ratelimit_fail_closed_kinds()),
        outage_backoff_s=settings.ratelimit_outage_backoff_s,
        stream_replicas=settings.nats_stream_replicas,
    )
    await limiter.start()
    limits = LimitsStep(limiter, catalog, projects)

    rag = RagClient(nc, timeout_s=settings.rag_timeout_s)
    channel = grpc.aio.insecure_channel(settings.router_addr, options=channel_options())
    stack.push_async_callback(channel.close)
    router = RouterClient(channel, timeout_s=settings.request_timeout_s)
    return EdgeState(
        settings=settings,
        metrics=metrics,
        nats=nc,
        engine=engine,
        keys=keys,
        projects=projects,
        endpoints=endpoints,
        catalog=catalog,
        router=router,
        sessions=SessionsClient(nc),
        budget=budget,
        passthrough=passthrough,
        proxy=Proxy(
            router,
            metrics,
            max_body_bytes=settings.max_body_bytes,
            projects=projects,
            budget=budget,
            passthrough=passthrough,
            context_window=ContextWindow(catalog, tokens.Encodings()),
            limits=limits,
            prices=catalog,
            drain=drain,
        ),
        limits=limits,
        drain=drain,
        channels=channels,
        gateways=gateways,
        rag=rag,
        retriever=RagRetriever(rag),
    )


_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Probes and scrapes are not worth a span."""
    return scope.get("path") in _UNTRACED_PATHS


def create_app(settings: EdgeSettings) -> FastAPI:
    """The edge's ASGI app; clients and stores come to life in its lifespan."""
    metrics = EdgeMetrics()
    drain = Drain(settings.shutdown_grace_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drain.bind(asyncio.get_running_loop())
        async with AsyncExitStack() as stack:
            app.state.edge = await _build_state(settings, metrics, drain, stack, console)
            lean.release_free_memory()
            yield

    app = FastAPI(
        title="Switchyard edge",
        summary="OpenAI-compatible gateway API",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's own telemetry is off: HTTP spans come from OTel's FastAPI
        # instrumentation (below, only when OTEL_* turns tracing on); Prometheus covers
        # metrics and the middleware logs errors, so FastAPI need not.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _untraced,
        },
    )
    app.state.drain = drain  # __main__'s DrainingServer starts it on SIGTERM
    console = ConsoleSessions(settings.secret_key.get_secret_value().encode())
    app.state.console = console
    install_error_handlers(app)
    app.include_router(build_api_router())
    install_openapi(app)
    app.add_middleware(HotRoutes, routes=hot_routes(app, hot_endpoints()))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if telemetry.tracing_enabled(settings.otel_endpoint):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # The server span is the trace's root (or joins the caller's traceparent); its
        # per-message receive/send spans would cost one span per streamed chunk.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="/healthz,/readyz,/metrics", exclude_spans=["receive", "send"]
        )
    return app
