"""Logging, tracing and the request-id context shared by every service.

``setup`` is called once by a service's ``main``. It configures logging as one
JSON object a line on stderr (``time``, ``level``, ``service``, ``logger``,
``message``, ``request_id``, and ``trace_id``/``span_id`` while a span is
active), every line passed through ``redact``: bearer tokens, API keys
(``sk-...``, ``AIza...``) and ``key=``/``authorization:``-style pairs never
reach a log. Prompt and completion text is not logged at all (the libraries whose
debug lines carry SQL parameters or bodies stay at WARNING); ``content``
renders it as its length only, unless ``GATEWAY_LOG_PROMPTS=true`` asks for the
text (debugging only).

Tracing is configured by OpenTelemetry's standard variables alone
(``tracing_enabled``): it is on when ``OTEL_TRACES_EXPORTER`` names an exporter
(``otlp``, ``console``) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and off
when none is, or ``OTEL_TRACES_EXPORTER=none``, or ``OTEL_SDK_DISABLED=true``.
``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``grpc`` (the default, as before) or
``http/protobuf``; the exporters, the sampler and the batch processor read their
own ``OTEL_*`` variables, the resource reads ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (the service's own name otherwise). Off, no
provider and no instrumentor is installed: spans are OpenTelemetry's no-op ones
and the NATS helpers below return at once.

Trace context crosses NATS as W3C ``traceparent`` headers: a publisher passes
its headers through ``inject``; a consumer opens ``consumer_span`` (one message)
or ``consumer_spans`` (a batch, one span per message), each a child of the
publisher's span. ``REQUEST_ID`` is a context variable that gRPC interceptors
and HTTP middleware set, and that log records carry.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "consumer_span",
    "consumer_spans",
    "content",
    "inject",
    "redact",
    "setup",
    "setup_logging",
    "shutdown",
    "tracing_enabled",
]

#: The current request id ("" outside a request).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

#: Whether ``setup`` installed a tracer provider in this process (the NATS helpers' switch).
_tracing = False
#: Whether prompt and completion text may be logged (``GATEWAY_LOG_PROMPTS``).
_log_prompts = False

_TRUE = frozenset({"1", "true", "yes", "on"})

#: Libraries whose DEBUG/INFO lines carry SQL parameters, bodies or URLs (so prompts, keys):
#: held at WARNING whatever GATEWAY_LOG_LEVEL says, unless GATEWAY_LOG_PROMPTS is on.
_CONTENT_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "httpx", "httpcore", "hpack", "psycopg")

_REDACTED = "[REDACTED]"
#: Secrets as they appear in free text, each replaced by its kept prefix + ``[REDACTED]``.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token> (any token format, ours and providers').
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1" + _REDACTED),
    # name=value / "name": "value" pairs whose name says secret.
    (
        re.compile(
            r"(?i)\b((?:x-)?(?:api[_-]?key|provider[_-]key|goog-api-key|authorization|"
            r"password|passwd|secret|token|credential|key)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\])(?:bearer\s+)?[^\s\"',;&}]+"
        ),
        r"\1" + _REDACTED,
    ),
    # Well-known key formats: OpenAI / Anthropic / ours (sk-...), Google (AIza...).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + _REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza" + _REDACTED),
    # Database URLs with a password: scheme://user:password@host.
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + _REDACTED + "@"),
)


def redact(text: str) -> str:
    """``text`` with every secret-looking substring replaced (see ``_SECRET_PATTERNS``)."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def content(text: str | None) -> str:
    """Prompt or completion text as a log may show it: its length, or the text itself
    when ``GATEWAY_LOG_PROMPTS`` is on."""
    if text is None:
        return "<none>"
    if _log_prompts:
        return text
    return f"<{len(text)} chars redacted>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, request_id,
    trace_id and span_id (when a span is active), exception (when there is one)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": REQUEST_ID.get(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            event["trace_id"] = format(span.trace_id, "032x")
            event["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            event["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        elif record.exc_text:
            event["exception"] = redact(record.exc_text)
        if record.stack_info:
            event["stack"] = redact(record.stack_info)
        return orjson.dumps(event, default=str).decode()


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_names() -> list[str]:
    return [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]


def tracing_enabled(otel_endpoint: str | None = None) -> bool:
    """Whether the standard ``OTEL_*`` variables (or the legacy ``otel_endpoint``
    setting) ask for traces (see the module docstring)."""
    if _env("OTEL_SDK_DISABLED").lower() in _TRUE:
        return False
    names = _exporter_names()
    if names:
        return any(name != "none" for name in names)
    return bool(
        _env("OTEL_EXPORTER_OTLP_ENDPOINT")
        or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or otel_endpoint
    )


def _exporters(otel_endpoint: str | None) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names() or ["otlp"]:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            # The exporters read their endpoint from the standard variables; the legacy
            # setting is passed only when none of them is set.
            endpoint = None
            if not (
                _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            ):
                endpoint = otel_endpoint or None
            protocol = (
                _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            )
            if protocol.startswith("http"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpExporter,
                )

                if endpoint:
                    endpoint = endpoint.rstrip("/") + "/v1/traces"
                exporters.append(HttpExporter(endpoint=endpoint))
            else:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )

                exporters.append(GrpcExporter(endpoint=endpoint))
        elif name != "none":
            logging.getLogger(__name__).warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return exporters


def setup_logging(*, service: str, log_level: str, log_prompts: bool | None = None) -> None:
    """JSON lines on stderr for this process (``setup`` without tracing, for one-shot
    commands such as ``migrate``); ``log_prompts`` ``None`` reads ``GATEWAY_LOG_PROMPTS``."""
    global _log_prompts
    _log_prompts = (
        log_prompts if log_prompts is not None else _env("GATEWAY_LOG_PROMPTS").lower() in _TRUE
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    for name in _CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if _log_prompts else logging.WARNING)


def setup(
    *,
    service: str,
    log_level: str,
    otel_endpoint: str | None = None,
    log_prompts: bool | None = None,
) -> TracerProvider | None:
    """Configure logging and tracing for this process; returns the tracer provider installed
    (``None``: tracing is off).

    ``otel_endpoint`` is the legacy setting (an OTLP endpoint); the ``OTEL_*`` variables
    win over it. ``log_prompts`` ``None`` reads ``GATEWAY_LOG_PROMPTS``.
    """
    global _tracing
    setup_logging(service=service, log_level=log_level, log_prompts=log_prompts)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The global provider can be set once per process; tests build several apps.
        _tracing = True
        return current
    if not tracing_enabled(otel_endpoint):
        return None
    attributes = {} if _env("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in _exporters(otel_endpoint):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracing = True
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Flush and stop trace export (nothing to do without a provider)."""
    if provider is not None:
        provider.shutdown()


def inject(headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """``headers`` plus the current span's ``traceparent`` (and ``tracestate``) for a NATS
    message; ``headers`` untouched when tracing is off or no span is active."""
    if not _tracing or not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier = dict(headers) if headers else {}
    propagate.inject(carrier)
    return carrier


class _HasHeaders(Protocol):
    @property
    def subject(self) -> str: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


_NATS_ATTRS = {"messaging.system": "nats"}


@contextlib.contextmanager
def consumer_span(msg: _HasHeaders, operation: str) -> Iterator[None]:
    """Handle ``msg`` inside a consumer span, child of the publisher's span when its
    headers carry one (a no-op when tracing is off)."""
    if not _tracing:
        yield
        return
    parent = propagate.extract(msg.headers or {})
    tracer = trace.get_tracer("gateway_common.nats")
    with tracer.start_as_current_span(
        f"{operation} {msg.subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            **_NATS_ATTRS,
            "messaging.destination.name": msg.subject,
            "messaging.operation.name": operation,
        },
    ):
        yield


@contextlib.contextmanager
def consumer_spans(msgs: Iterable[_HasHeaders], operation: str) -> Iterator[None]:
    """Handle a batch inside one consumer span per message, each a child of its own
    publisher's span, all ended when the batch is done (a no-op when tracing is off)."""
    if not _tracing:
        yield
        return
    tracer = trace.get_tracer("gateway_common.nats")
    spans = []
    batch = list(msgs)
    for msg in batch:
        spans.append(
            tracer.start_span(
                f"{operation} {msg.subject}",
                context=propagate.extract(msg.headers or {}),
                kind=SpanKind.CONSUMER,
                attributes={
                    **_NATS_ATTRS,
                    "messaging.destination.name": msg.subject,
                    "messaging.operation.name": operation,
                    "messaging.batch.message_count": len(batch),
                },
            )
        )
    try:
        yield
    finally:
        for span in spans:
            span.end()
