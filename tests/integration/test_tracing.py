"""One trace per request across the edge, the router, billing and sessions.

A dedicated stack (SQLite) runs with only the standard OTEL_* variables set,
exporting OTLP/HTTP to a small receiver in this test process. One Responses API
call (stored, so the edge asks sessions to keep it) must leave one trace:

    edge HTTP server span (FastAPI instrumentation)
      -> edge gRPC client span -> router gRPC server span (gRPC instrumentation)
           -> router upstream HTTP client span (aiohttp-client instrumentation)
           -> billing's consumer span of the usage event (traceparent in the NATS headers)
      -> sessions' consumer span of the stored-response request (traceparent in headers)

A Gateway API call on an endpoint with sessions and a monthly budget adds, each a
child of the edge's HTTP span: billing's span of the budget lease request, sessions'
spans of the history open and append requests, and sessions' consumer span of the
transcript event the edge published to JetStream.
"""

from __future__ import annotations

import gzip
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from devtools.ports import PortPlan
from devtools.stack import Stack, StackConfig, render_catalog
from gateway_common import subjects

from .helpers import poll
from .test_gateway_api import Tenant

_CATALOG = Path(__file__).with_name("catalog.yaml")
_SERVICES = ("router", "billing", "sessions", "edge")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str]


class Collector:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` (protobuf), spans kept in memory."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector.add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={
                                a.key: a.value.string_value or str(a.value.int_value)
                                for a in span.attributes
                            },
                        )
                    )
        with self._lock:
            self.spans.extend(spans)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own SQLite stack, traced by OTEL_* variables only, exporting to ``collector``."""
    data_dir = tmp_path_factory.mktemp("stack-traced")
    ports = PortPlan.free()
    catalog = data_dir / "catalog.yaml"
    catalog.write_text(render_catalog(_CATALOG, f"http://127.0.0.1:{ports.fake_provider}"))
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            ports=ports,
            catalog_path=catalog,
            services=_SERVICES,
            api_key="sk-sy-it-" + secrets.token_urlsafe(16),
            admin_token="sy-admin-it-" + secrets.token_urlsafe(16),
            extra_env={name: otel for name in _SERVICES},
        )
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _one(spans: list[Span], service: str, kind: int, name_part: str = "") -> Span:
    found = [s for s in spans if s.service == service and s.kind == kind and name_part in s.name]
    assert len(found) == 1, (service, kind, name_part, [(s.service, s.name) for s in spans])
    return found[0]


def _by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def _ancestors(span: Span, spans: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id and span.parent_id in spans:
        span = spans[span.parent_id]
        chain.append(span)
    return chain


def test_one_request_is_one_trace_across_edge_router_billing_and_sessions(
    traced_stack: Stack, collector: Collector
) -> None:
    key = traced_stack.config.api_key
    answer = httpx.post(
        f"{traced_stack.base_url}/v1/responses",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "mock-reasoning", "input": f"trace me {secrets.token_hex(4)}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    def edge_root() -> Span | None:
        roots = [
            s
            for s in list(collector.spans)
            if s.service == "edge" and s.kind == PbSpan.SPAN_KIND_SERVER and not s.parent_id
        ]
        return roots[-1] if roots else None

    root = poll(edge_root, timeout=30)
    expected = {"edge", "router", "billing", "sessions"}

    def whole_trace() -> list[Span] | None:
        spans = collector.trace(root.trace_id)
        services = {s.service for s in spans}
        kinds = {(s.service, s.kind) for s in spans}
        usage = any(s.service == "billing" and "usage.recorded" in s.name for s in spans)
        complete = expected <= services and ("router", PbSpan.SPAN_KIND_CLIENT) in kinds and usage
        return spans if complete else None

    spans = poll(whole_trace, timeout=30)
    index = _by_id(spans)

    edge_grpc = _one(spans, "edge", PbSpan.SPAN_KIND_CLIENT, "Router")
    router_server = _one(spans, "router", PbSpan.SPAN_KIND_SERVER, "Router")
    upstream = _one(spans, "router", PbSpan.SPAN_KIND_CLIENT)
    billing = _one(spans, "billing", PbSpan.SPAN_KIND_CONSUMER, "usage.recorded")
    sessions = _one(spans, "sessions", PbSpan.SPAN_KIND_CONSUMER)

    # Parent links: each hop is the direct child of the span that made it.
    assert edge_grpc.parent_id == root.span_id
    assert router_server.parent_id == edge_grpc.span_id
    assert upstream.parent_id == router_server.span_id
    assert billing.parent_id == router_server.span_id  # the traceparent the router published
    assert sessions.parent_id == root.span_id  # the traceparent of the edge's request
    assert sessions.name.startswith("process sessions.responses.put")
    assert _ancestors(billing, index)[-1] == _ancestors(sessions, index)[-1] == root
    # The upstream span is the call to the fake provider's chat endpoint.
    assert "POST" in upstream.name
    # Every span of those services for this request is in this one trace.
    assert {s.trace_id for s in (root, edge_grpc, router_server, upstream, billing, sessions)} == {
        root.trace_id
    }


def test_a_gateway_api_call_with_a_session_and_a_budget_is_one_trace(
    traced_stack: Stack, collector: Collector
) -> None:
    with httpx.Client(base_url=traced_stack.base_url, timeout=30) as http:
        tenant = Tenant(http, traced_stack)
        tenant.endpoint("traced", sessions_enabled=True, monthly_budget="5")
        answer = tenant.call("traced", {"message": f"trace me {secrets.token_hex(4)}"})
    assert answer.status_code == 200, answer.text
    path = f"/api/{tenant.id}/traced"

    def whole_trace() -> list[Span] | None:
        roots = [
            s
            for s in list(collector.spans)
            if s.service == "edge"
            and s.kind == PbSpan.SPAN_KIND_SERVER
            and not s.parent_id
            and s.attributes.get("url.path", s.attributes.get("http.target")) == path
        ]
        if not roots:
            return None
        spans = collector.trace(roots[0].trace_id)
        names = {s.name for s in spans if s.kind == PbSpan.SPAN_KIND_CONSUMER}
        wanted = {
            f"process {subject}"
            for subject in (
                subjects.BILLING_BUDGET_LEASE,
                subjects.HISTORY_OPEN,
                subjects.HISTORY_APPEND,
                subjects.SESSION_TURN_APPENDED,
                subjects.USAGE_RECORDED,
            )
        }
        # Each process exports in its own batches: wait for the router's server span too.
        served = any(s.service == "router" and s.kind == PbSpan.SPAN_KIND_SERVER for s in spans)
        return spans if wanted <= names and served else None

    spans = poll(whole_trace, timeout=30)
    root = next(s for s in spans if not s.parent_id)
    router_server = _one(spans, "router", PbSpan.SPAN_KIND_SERVER, "Router")
    lease = _one(spans, "billing", PbSpan.SPAN_KIND_CONSUMER, subjects.BILLING_BUDGET_LEASE)
    transcript = _one(spans, "sessions", PbSpan.SPAN_KIND_CONSUMER, subjects.SESSION_TURN_APPENDED)
    history = [
        _one(spans, "sessions", PbSpan.SPAN_KIND_CONSUMER, subject)
        for subject in (subjects.HISTORY_OPEN, subjects.HISTORY_APPEND)
    ]
    billing = _one(spans, "billing", PbSpan.SPAN_KIND_CONSUMER, subjects.USAGE_RECORDED)
    # The edge's requests and its JetStream publish carry the HTTP span as their parent.
    assert lease.parent_id == transcript.parent_id == root.span_id
    assert [span.parent_id for span in history] == [root.span_id, root.span_id]
    assert billing.parent_id == router_server.span_id
