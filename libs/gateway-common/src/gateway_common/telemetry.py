"""Logging, tracing and the request-id context shared by every service.

``setup`` is called once by a service's ``main``: it configures structured
logging and, when an OTLP endpoint is configured, an OpenTelemetry tracer
provider exporting to it. Without an endpoint no provider is installed, so
spans are OpenTelemetry's no-op ones and cost nothing per request (FastAPI's
HTTP spans are skipped altogether). ``request_id`` is a context variable that gRPC
interceptors and HTTP middleware set, and that log records carry.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["REQUEST_ID", "setup", "shutdown"]

#: The current request id ("" outside a request).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def setup(*, service: str, log_level: str, otel_endpoint: str | None) -> TracerProvider | None:
    """Configure logging and tracing for this process; returns the tracer provider installed
    (``None``: no endpoint, no tracing)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {service} %(name)s [%(request_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The global provider can be set once per process; tests build several apps.
        return current
    if not otel_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otel_endpoint)))
    trace.set_tracer_provider(provider)
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Flush and stop trace export (nothing to do without a provider)."""
    if provider is not None:
        provider.shutdown()
