"""telemetry: JSON log lines, redaction, the OTEL_* switch, traceparent in NATS headers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway_common import telemetry

_OTEL = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTEL:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "legacy", "on"),
    [
        ({}, None, False),
        ({}, "http://collector:4317", True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, None, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, None, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, None, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, None, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None, False),
    ],
)
def test_tracing_follows_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], legacy: str | None, on: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert telemetry.tracing_enabled(legacy) is on


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer sy-admin-abc.DEF_123", "sy-admin-abc.DEF_123"),
        ("invalid key sk-sy-0123456789abcdef given", "sk-sy-0123456789abcdef"),
        ("upstream said: Incorrect API key sk-proj-XYZ987654321", "sk-proj-XYZ987654321"),
        ('{"api_key": "hunter2-very-secret"}', "hunter2-very-secret"),
        ("x-provider-key=plainsecretvalue", "plainsecretvalue"),
        ("GET /v1beta/models?key=AIzaSyA0123456789abcdefghijklmnop", "AIzaSyA0123456789abcdef"),
        ("postgresql://user:s3cr3t@db:5432/app", "s3cr3t"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    assert secret not in telemetry.redact(text)
    assert "[REDACTED]" in telemetry.redact(text)


def test_redact_keeps_ordinary_text() -> None:
    text = "billed 12 tokens for key_id=k_123 in project p_9 (api_key_id=k_123)"
    assert telemetry.redact(text) == text


def test_content_is_a_length_unless_prompt_logging_is_on() -> None:
    telemetry.setup_logging(service="t", log_level="INFO", log_prompts=False)
    assert telemetry.content("a secret prompt") == "<15 chars redacted>"
    telemetry.setup_logging(service="t", log_level="INFO", log_prompts=True)
    try:
        assert telemetry.content("a secret prompt") == "a secret prompt"
    finally:
        telemetry.setup_logging(service="t", log_level="INFO", log_prompts=False)


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("edge.test", logging.WARNING, __file__, 1, message, args, None)


def test_a_log_line_is_one_json_object_with_request_and_trace_ids() -> None:
    formatter = telemetry.JsonFormatter("edge")
    token = telemetry.REQUEST_ID.set("req-42")
    provider = TracerProvider()
    try:
        with provider.get_tracer("t").start_as_current_span("s") as span:
            line = formatter.format(_record("key %s refused", "sk-sy-abcdefghijkl"))
            context = span.get_span_context()
    finally:
        telemetry.REQUEST_ID.reset(token)
    assert "\n" not in line
    event = orjson.loads(line)
    assert event["level"] == "WARNING" and event["service"] == "edge"
    assert event["logger"] == "edge.test" and event["request_id"] == "req-42"
    assert event["message"] == "key sk-[REDACTED] refused"
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    assert event["time"].endswith("+00:00")
    # No span, no ids.
    assert "trace_id" not in orjson.loads(formatter.format(_record("plain")))


def test_exceptions_are_redacted_too() -> None:
    formatter = telemetry.JsonFormatter("router")
    try:
        raise RuntimeError("provider refused sk-live-0123456789")
    except RuntimeError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    event = orjson.loads(formatter.format(record))
    assert "RuntimeError" in event["exception"]
    assert "sk-live-0123456789" not in event["exception"]


@dataclass
class _Msg:
    subject: str
    headers: dict[str, str] | None


def test_off_nats_helpers_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_tracing", False)
    headers = {"Nats-Msg-Id": "e1"}
    assert telemetry.inject(headers) is headers
    assert telemetry.inject() is None
    with telemetry.consumer_span(_Msg("s", None), "process"):
        assert not trace.get_current_span().get_span_context().is_valid


def test_traceparent_crosses_a_nats_message(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracing", True)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    with provider.get_tracer("t").start_as_current_span("publish") as publisher:
        headers = telemetry.inject({"Nats-Msg-Id": "e1"})
    assert headers is not None and headers["Nats-Msg-Id"] == "e1"
    assert headers["traceparent"].split("-")[1] == format(
        publisher.get_span_context().trace_id, "032x"
    )
    with telemetry.consumer_span(_Msg("usage.recorded.v1", headers), "process"):
        pass
    with telemetry.consumer_spans([_Msg("usage.recorded.v1", headers)] * 2, "process"):
        pass
    consumers = [s for s in exporter.get_finished_spans() if s.name.startswith("process")]
    assert len(consumers) == 3
    for span in consumers:
        assert span.kind == trace.SpanKind.CONSUMER
        assert span.parent is not None
        assert span.parent.span_id == publisher.get_span_context().span_id
        assert span.context.trace_id == publisher.get_span_context().trace_id
