"""Prometheus metrics of every service of a running stack, scraped as Prometheus would.

- every service exports the families the operations contract names (with samples);
- labels are bounded: after 200 more requests, each with its own request id, user
  text, ``user`` field and, for some, a model name nobody configured, an unknown URL,
  a stored response id, an embedding or a WebDAV method, every service exports exactly
  the same series as before, and no label value carries any of those;
- every metric name the Grafana dashboard and the alert rules query exists in the scrape;
- the database pool gauges read each service's own engine (on PostgreSQL: its pool of
  10, nothing checked out beyond pool + overflow);
- billing, sessions and rag answer /healthz and /readyz beside /metrics.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools import k8scheck
from devtools.stack import Stack
from tests.integration.helpers import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
#: The tests on ``sqlite_stack`` join the SQLite stack's xdist worker (conftest groups
#: ``stack`` tests by backend), so ``make test-integration`` never starts a second SQLite
#: stack on the PostgreSQL worker. Not module-wide: xdist joins several groups' names.
on_sqlite_worker = pytest.mark.xdist_group("sqlite")

#: Families (as the parser names them: counters without ``_total``) per service.
FAMILIES = {
    "edge": {
        "switchyard_http_requests",
        "switchyard_http_request_duration_seconds",
        "switchyard_gateway_overhead_seconds",
        "switchyard_edge_time_to_first_token_seconds",
        "switchyard_edge_rejections",
        "switchyard_db_pool_size",
        "switchyard_db_pool_checked_out",
    },
    "router": {
        "switchyard_router_requests",
        "switchyard_router_tokens",
        "switchyard_router_upstream_attempts",
        "switchyard_router_upstream_latency_seconds",
        "switchyard_router_failovers",
        "switchyard_router_retries",
        "switchyard_router_breaker_state",
    },
    "billing": {
        "switchyard_billing_events_billed",
        "switchyard_billing_events_duplicate",
        "switchyard_billing_cost_usd",
        "switchyard_billing_tokens",
        "switchyard_billing_lag_seconds",
        "switchyard_jetstream_consumer_pending",
        "switchyard_jetstream_consumer_ack_pending",
        "switchyard_jetstream_consumer_redelivered",
        "switchyard_jetstream_redeliveries",
        "switchyard_db_pool_size",
        "switchyard_db_pool_checked_out",
    },
    "sessions": {
        "switchyard_sessions_requests",
        "switchyard_sessions_request_duration_seconds",
        "switchyard_sessions_history_duplicates",
        "switchyard_sessions_transcripts",
        "switchyard_jetstream_consumer_pending",
        "switchyard_jetstream_consumer_ack_pending",
        "switchyard_jetstream_redeliveries",
        "switchyard_db_pool_size",
        "switchyard_db_pool_checked_out",
    },
    "rag": {
        "switchyard_jetstream_consumer_pending",
        "switchyard_db_pool_size",
        "switchyard_rag_ingest_jobs",
        "switchyard_rag_ingest_duration_seconds",
        "switchyard_rag_ingest_queue_depth",
    },
}

#: Families exported before their first sample, checked by name only: a spent retry budget
#: takes more than ``min_per_s`` x ``window_s`` (100) retries within 10 s, too many to cause here.
DECLARED = {"router": {"switchyard_router_retry_budget_exhausted"}}

Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]


def metrics_urls(stack: Stack) -> dict[str, str]:
    ports = stack.config.ports
    local = "http://127.0.0.1"
    return {
        "edge": f"{stack.base_url}/metrics",
        "router": f"{local}:{ports.router_metrics}/metrics",
        "billing": f"{local}:{ports.billing_metrics}/metrics",
        "sessions": f"{local}:{ports.sessions_metrics}/metrics",
        "rag": f"{local}:{ports.rag_metrics}/metrics",
    }


def scrape(url: str) -> tuple[dict[str, int], Series]:
    """Samples per family name, and every series (sample name + labels)."""
    text = httpx.get(url, timeout=5).raise_for_status().text
    families: dict[str, int] = {}
    series = set()
    for family in text_string_to_metric_families(text):
        families[family.name] = len(family.samples)
        for sample in family.samples:
            series.add((sample.name, tuple(sorted(sample.labels.items()))))
    return families, frozenset(series)


def scrape_all(stack: Stack) -> dict[str, Series]:
    return {service: scrape(url)[1] for service, url in metrics_urls(stack).items()}


@pytest.fixture(scope="module")
def client(sqlite_stack: Stack) -> Iterator[httpx.Client]:
    key = sqlite_stack.config.api_key
    with httpx.Client(
        base_url=sqlite_stack.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        yield http


#: Methods the HTTP parser accepts beyond the standard ones (each must be ``other``).
ODD_METHODS = ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "PURGE", "SEARCH", "REPORT", "COPY")


def call(client: httpx.Client, kind: str, n: int) -> httpx.Response:
    """One request of ``kind`` whose request id, user text, user field and ids are all its own."""
    marker = uuid.uuid4().hex
    headers = {"x-request-id": f"req-{marker}"}
    text = f"count me {n} {marker}"
    if kind == "responses":
        body = {"model": "mock-reasoning", "input": text, "user": f"user-{marker}"}
        return client.post("/v1/responses", json=body, headers=headers)
    if kind == "get_response":
        return client.get(f"/v1/responses/resp_{marker}", headers=headers)
    if kind == "embed":
        return client.post(
            "/v1/embeddings", json={"model": "mock-embed", "input": text}, headers=headers
        )
    if kind == "nowhere":
        return client.get(f"/v1/nowhere-{marker}", headers=headers)
    if kind == "odd_method":
        return client.request(ODD_METHODS[n % len(ODD_METHODS)], f"/v1/x-{marker}", headers=headers)
    models = {
        "unknown": f"no-such-model-{marker[:10]}",
        "failover": "fo-metrics",
        "retry": "fo-metrics-retry",
    }
    model = models.get(kind, "mock-chat")
    chat: dict[str, object] = {
        "model": model,
        "user": f"user-{marker}",
        "messages": [{"role": "user", "content": text}],
    }
    if kind == "stream":
        chat["stream"] = True
    return client.post("/v1/chat/completions", json=chat, headers=headers)


#: Status each kind of ``call`` is answered with.
EXPECTED = {
    "unary": 200,
    "stream": 200,
    "unknown": 404,
    "failover": 200,
    "responses": 200,
    "get_response": 404,
    "embed": 200,
    "nowhere": 404,
    "odd_method": 404,
}


#: The kinds of request the 200-request load cycles through (chat the most).
LOAD = (
    "unary",
    "stream",
    "responses",
    "unary",
    "stream",
    "get_response",
    "embed",
    "unknown",
    "nowhere",
    "odd_method",
)


def billing_caught_up(stack: Stack) -> bool | None:
    """True once billing's own gauges show nothing pending or unacked on its consumer."""
    text = httpx.get(metrics_urls(stack)["billing"], timeout=5).text
    lag = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name
        in ("switchyard_jetstream_consumer_pending", "switchyard_jetstream_consumer_ack_pending")
        and sample.labels.get("consumer") == "billing-ledger"
    ]
    return True if len(lag) == 2 and not any(lag) else None


def lag_watched(stack: Stack) -> bool | None:
    """True once every consumer service reports the lag of both durable consumers.

    Each polls every 5 s and sees a consumer only once it exists, so right after
    start a service may not have seen the other's yet.
    """
    for service in ("billing", "sessions", "rag"):
        _, series = scrape(metrics_urls(stack)[service])
        consumers = {
            dict(labels).get("consumer")
            for name, labels in series
            if name == "switchyard_jetstream_consumer_pending"
        }
        if not {"billing-ledger", "sessions-history"} <= consumers:
            return None
    return True


def warm_up(stack: Stack, client: httpx.Client) -> None:
    """One request of every kind the load uses (plus a failover and a retry), then billing
    catches up."""
    for kind in LOAD:
        reply = call(client, kind, 0)
        assert reply.status_code == EXPECTED[kind], (kind, reply.text)
    failover = call(client, "failover", 0)
    assert failover.status_code == 200
    assert failover.headers["x-switchyard-deployment"] == "metrics-fallback"
    # Both passes fail (502); once the breaker opened after 5 failures in a row, the
    # second pass is refused by it instead, and the answer may say so (503).
    assert call(client, "retry", 0).status_code in (502, 503)
    poll(lambda: billing_caught_up(stack), timeout=30, interval=0.5)
    poll(lambda: lag_watched(stack), timeout=30, interval=0.5)
    scrape_all(stack)  # a scrape is itself a request the edge counts (route /metrics)


@on_sqlite_worker
def test_every_service_exports_the_contract_families(
    sqlite_stack: Stack, client: httpx.Client
) -> None:
    warm_up(sqlite_stack, client)
    for service, url in metrics_urls(sqlite_stack).items():
        families, _ = scrape(url)
        missing = {f for f in FAMILIES[service] if not families.get(f)}
        assert not missing, f"{service} lacks (or has no samples of) {sorted(missing)}"
        undeclared = DECLARED.get(service, set()) - families.keys()
        assert not undeclared, f"{service} does not export {sorted(undeclared)}"


@on_sqlite_worker
def test_series_stay_constant_under_distinct_ids(sqlite_stack: Stack, client: httpx.Client) -> None:
    warm_up(sqlite_stack, client)
    before = scrape_all(sqlite_stack)
    markers = []
    for n in range(200):
        kind = LOAD[n % len(LOAD)]
        reply = call(client, kind, n + 1)
        assert reply.status_code == EXPECTED[kind], (kind, reply.text)
        markers.append(reply.headers["x-request-id"].removeprefix("req-"))
    poll(lambda: billing_caught_up(sqlite_stack), timeout=60, interval=0.5)
    after = scrape_all(sqlite_stack)
    for service in before:
        assert after[service] == before[service], (
            f"{service}: new series {sorted(after[service] - before[service])[:5]}, "
            f"gone {sorted(before[service] - after[service])[:5]}"
        )
        values = " ".join(v for _, labels in after[service] for _, v in labels)
        assert "no-such-model" not in values, service
        assert not [m for m in markers if m in values], service


@on_sqlite_worker
def test_dashboard_and_alert_queries_name_metrics_that_exist(
    sqlite_stack: Stack, client: httpx.Client
) -> None:
    warm_up(sqlite_stack, client)
    exported = {name for series in scrape_all(sqlite_stack).values() for name, _ in series}
    queries = {f"dashboard: {q}": q for q in k8scheck.dashboard_queries()}
    queries |= {f"alert {name}": q for name, q in k8scheck.alert_queries().items()}
    for where, query in queries.items():
        names = k8scheck.metric_names(query)
        assert names, where
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported"


@on_sqlite_worker
def test_consumers_serve_liveness_and_readiness_beside_metrics(sqlite_stack: Stack) -> None:
    for service in ("billing", "sessions", "rag"):
        base = metrics_urls(sqlite_stack)[service].removesuffix("/metrics")
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, service
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, (service, ready.text)


def test_database_pool_gauges_read_each_services_engine(stack: Stack) -> None:
    on_postgres = stack.config.database_url is not None
    for service in ("edge", "billing", "sessions", "rag"):
        text = httpx.get(metrics_urls(stack)[service], timeout=5).raise_for_status().text
        pool = {
            family.name: {s.labels["service"]: s.value for s in family.samples}
            for family in text_string_to_metric_families(text)
            if family.name.startswith("switchyard_db_pool_")
        }
        assert set(pool) == {
            "switchyard_db_pool_size",
            "switchyard_db_pool_checked_out",
            "switchyard_db_pool_overflow",
        }, service
        assert all(set(by_service) == {service} for by_service in pool.values()), (service, pool)
        size = pool["switchyard_db_pool_size"][service]
        checked_out = pool["switchyard_db_pool_checked_out"][service]
        if on_postgres:  # gateway_common.db: pool_size=10, max_overflow=10
            assert size == 10, (service, pool)
        assert 0 <= checked_out <= size + 10, (service, pool)
