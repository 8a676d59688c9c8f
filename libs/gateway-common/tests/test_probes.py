"""``gateway_common.probes``: /healthz, /readyz and /metrics on one threaded listener."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from gateway_common.probes import ProbeServer, Readiness


def test_probes_follow_readiness_and_serve_metrics() -> None:
    registry = CollectorRegistry()
    Counter("switchyard_probe_test", "A counter.", registry=registry).inc()
    readiness = Readiness()
    server = ProbeServer(host="127.0.0.1", port=0, registry=registry, readiness=readiness)
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        starting = httpx.get(f"{base}/readyz")
        assert (starting.status_code, starting.text) == (503, "not ready: starting\n")
        readiness.set(True)
        assert httpx.get(f"{base}/readyz").status_code == 200
        readiness.set(False, "stopping")
        assert httpx.get(f"{base}/readyz").text == "not ready: stopping\n"
        assert "switchyard_probe_test_total 1.0" in httpx.get(f"{base}/metrics").text
    finally:
        server.close()
