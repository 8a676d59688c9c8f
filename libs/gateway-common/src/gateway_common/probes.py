"""The HTTP listener of a NATS-facing service: ``/metrics``, ``/healthz`` and ``/readyz``.

billing, sessions and rag serve no HTTP of their own; this listener (on
``<PREFIX>_METRICS_PORT``) gives Kubernetes the same probes as the edge:

    GET /healthz   200 while the process serves this listener (liveness)
    GET /readyz    200 while ``Readiness.ready``, else 503 (readiness)
    GET /metrics   Prometheus text of the service's registry

``Readiness`` is set by ``gateway_common.runtime.open_runtime`` from what the
service needs (database answering, NATS connected) and turned false first
thing on shutdown. The server runs in a daemon thread (the WSGI server of the
standard library, one thread per request as prometheus_client's own does), so a
busy event loop never delays a probe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["ProbeServer", "Readiness"]

_StartResponse = Callable[..., Any]


class Readiness:
    """A thread-safe readiness flag with the reason it is false (shown by /readyz)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"

    @property
    def ready(self) -> bool:
        """True when the service should be sent work."""
        with self._lock:
            return self._ready

    @property
    def reason(self) -> str:
        """``ok`` when ready, else why not (``starting``, ``stopping``, ``database``, ...)."""
        with self._lock:
            return "ok" if self._ready else self._reason

    def set(self, ready: bool, reason: str = "ok") -> None:
        """Mark ready, or not ready for ``reason``."""
        with self._lock:
            self._ready = ready
            self._reason = reason


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


class ProbeServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port``; ``close`` stops it."""

    def __init__(
        self, *, host: str, port: int, registry: CollectorRegistry, readiness: Readiness
    ) -> None:
        self._readiness = readiness
        self._metrics = make_wsgi_app(registry)
        self._server = make_server(
            host, port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probes", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def _app(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return _text(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if self._readiness.ready:
                return _text(start_response, "200 OK", b"ready\n")
            reason = self._readiness.reason.encode()
            return _text(start_response, "503 Service Unavailable", b"not ready: " + reason + b"\n")
        return self._metrics(environ, start_response)  # type: ignore[no-any-return]

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving and join the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)


def _text(start_response: _StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
