"""Composition root: ``serve(settings)`` builds the router and runs it until a signal.

Build order (shutdown runs in reverse, owned by one ``AsyncExitStack``):

    settings -> telemetry -> NATS + JetStream streams -> metrics -> live catalog
    (one pooled HTTP client per provider) -> custom upstreams (credentials' own
    base URLs) -> usage outbox (SQLite) and its replay task -> failover, usage
    publisher, service
    -> grpc.aio server (context interceptor, health) -> Prometheus listener

SIGTERM/SIGINT first turn the gRPC health service NOT_SERVING (readiness
probes and health-checking clients stop sending), then stop the server with
``ROUTER_SHUTDOWN_GRACE_S`` for in-flight calls and streams (new calls are
refused; each finishing call publishes its usage first), then flush the usage
outbox: a last replay to NATS for ``ROUTER_USAGE_FLUSH_GRACE_S`` plus what the
calls left of their grace, after which the replay task ends (the events NATS
still did not take stay in the file and are logged), then close the provider
clients and drain NATS (close it when it is unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import grpc
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY, start_http_server

from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common import lean, telemetry
from gateway_common import nats as gw_nats
from gateway_common.grpc import ContextInterceptor, add_health, set_serving

from .catalog import LiveCatalog
from .config import RouterSettings
from .failover import Failover
from .handlers import RouterServicer
from .metrics import RouterMetrics
from .outbox import UsageOutbox
from .providers.registry import build_adapters
from .service import RouterService
from .upstreams import CustomUpstreams
from .usage import UsagePublisher

__all__ = ["serve"]

log = logging.getLogger(__name__)

_SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name


async def serve(settings: RouterSettings) -> None:
    """Run the router until SIGTERM or SIGINT; returns after a clean shutdown."""
    tracer = telemetry.setup(
        service=settings.service_name,
        log_level=settings.log_level,
        otel_endpoint=settings.otel_endpoint,
        log_prompts=settings.log_prompts,
    )
    # httpx logs every provider request at INFO: too costly and noisy on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if tracer is not None:
        _instrument(tracer)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(telemetry.shutdown, tracer)

        nc = await gw_nats.connect(settings.nats_url, name=settings.service_name)
        stack.push_async_callback(gw_nats.close, nc)
        js = nc.jetstream()
        await gw_nats.ensure_streams(js, replicas=settings.nats_stream_replicas)

        metrics = RouterMetrics(REGISTRY)
        catalog = LiveCatalog(
            settings.catalog_path,
            lambda cat, *, reuse: build_adapters(cat, os.environ, reuse=reuse),
            metrics,
            poll_s=settings.catalog_poll_s,
        )
        await catalog.load()
        stack.push_async_callback(catalog.aclose)
        catalog.start()

        upstreams = CustomUpstreams(allow_private=settings.allow_private_upstreams)
        stack.push_async_callback(upstreams.aclose)
        outbox = UsageOutbox(settings.usage_outbox_path or settings.data_dir / "router-outbox.db")
        stack.callback(outbox.close)
        publisher = UsagePublisher(
            js,
            metrics,
            ack_timeout_s=settings.usage_ack_timeout_s,
            retry_window_s=settings.usage_publish_window_s,
            outbox=outbox,
        )
        publisher.start_replay()
        # Ends the replay task only if _stop_serving's flush did not (start-up failed).
        stack.push_async_callback(publisher.aclose)
        service = RouterService(catalog, Failover(metrics), publisher, upstreams)
        server = grpc.aio.server(interceptors=[ContextInterceptor()])
        router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), server)
        health = add_health(server)
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        await server.start()
        stack.push_async_callback(_stop_serving, server, publisher, settings)
        # Runs before server.stop (the stack unwinds in reverse): NOT_SERVING first.
        stack.push_async_callback(health.enter_graceful_shutdown)
        await set_serving(health, _SERVICE_NAME)

        if settings.metrics_port > 0:
            http_server, _ = start_http_server(
                settings.metrics_port, addr=settings.metrics_host, registry=REGISTRY
            )
            stack.callback(http_server.shutdown)

        log.info("router serving gRPC on %s:%d", settings.host, port)
        lean.release_free_memory()
        await _wait_for_signal()
        log.info("stopping: %.0f s grace for in-flight calls", settings.shutdown_grace_s)


def _instrument(tracer: TracerProvider) -> None:
    """gRPC server spans (joining the edge's trace) and a client span per provider call
    (aiohttp under httpx_aiohttp); before the server and the provider clients exist."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer

    for instrumentor in (GrpcAioInstrumentorServer(), AioHttpClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer)


async def _stop_serving(
    server: grpc.aio.Server, publisher: UsagePublisher, settings: RouterSettings
) -> None:
    """Stop the server (in-flight calls finish within the grace, recording their usage),
    then flush the outbox with the flush's own grace plus what the calls left unused."""
    loop = asyncio.get_running_loop()
    flush_by = loop.time() + settings.shutdown_grace_s + settings.usage_flush_grace_s
    await server.stop(settings.shutdown_grace_s)
    await publisher.flush(timeout_s=flush_by - loop.time())


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
