"""Logging, tracing and the request-id context shared by every service.

``setup`` is called once by a service's ``main``: it configures structured
logging and an OpenTelemetry tracer provider (exporting over OTLP when an
endpoint is configured). ``request_id`` is a context variable that gRPC
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


def setup(*, service: str, log_level: str, otel_endpoint: str | None) -> TracerProvider:
    """Configure logging and tracing for this process; returns the tracer provider."""
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
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otel_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otel_endpoint)))
    trace.set_tracer_provider(provider)
    return provider


def shutdown(provider: TracerProvider) -> None:
    """Flush and stop trace export."""
    provider.shutdown()
