"""The admin billing routes against a real billing process over a private NATS.

Billing (``python -m billing``, SQLite) is started once for the module on
its own nats-server (``billing_process``), which this module's edges use too.
Usage reaches the ledger the way the router sends it: a ``UsageRecorded``
event on JetStream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import nats
import pytest
from pydantic import SecretStr

from edge import EdgeSettings, create_app
from gateway_common import billing_api as wire
from gateway_common import subjects
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.testing import nats_server, wait_for

from . import billing_process
from .billing_process import billing_answers, publish_usage
from .support import Edge, auth, seed_keys

pytestmark = pytest.mark.timeout(60)

OPERATOR = "operator-token-for-billing-tests"

# Module fixtures: this module's own NATS and billing process.
nats_url = billing_process.nats_url
billing = billing_process.billing


@pytest.fixture
async def edge(settings: EdgeSettings, billing: None) -> AsyncIterator[Edge]:
    """The edge app with an operator token, once billing answers."""
    await billing_answers(settings.nats_url)
    settings = settings.model_copy(update={"admin_token": SecretStr(OPERATOR)})
    key_ids = await seed_keys(settings.resolved_database_url())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            yield Edge(app, client, key_ids)


async def _project_id(edge: Edge) -> str:
    resp = await edge.client.get("/admin/projects", headers=auth())
    return str(resp.json()["data"][0]["id"])


async def test_budgets_of_a_project_and_a_key_are_set_shown_and_removed(edge: Edge) -> None:
    pid = await _project_id(edge)
    base = f"/admin/projects/{pid}"
    resp = await edge.client.put(f"{base}/budget", json={"limit": "25.50"}, headers=auth())
    assert resp.status_code == 200, resp.text
    shown = (await edge.client.get(f"{base}/budget", headers=auth())).json()
    assert shown["budget"]["scope"] == "project"
    assert Decimal(shown["budget"]["limit"]) == Decimal("25.50")
    assert isinstance(shown["spent"], str)

    key_path = f"{base}/keys/{edge.key_ids['embed']}/budget"
    resp = await edge.client.put(key_path, json={"limit": "3"}, headers=auth())
    assert resp.status_code == 200, resp.text
    assert resp.json()["budget"]["scope_id"] == edge.key_ids["embed"]
    assert resp.json()["api_key_id"] == edge.key_ids["embed"]

    cleared = await edge.client.put(f"{base}/budget", json={"limit": None}, headers=auth())
    assert cleared.json()["budget"] is None


async def test_money_must_be_a_decimal_string_and_ids_must_be_the_projects(edge: Edge) -> None:
    pid = await _project_id(edge)
    for body in ({"limit": 25.5}, {"limit": "-1"}, {"limit": "abc"}, {"limit": "1", "x": 1}):
        resp = await edge.client.put(f"/admin/projects/{pid}/budget", json=body, headers=auth())
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["ok"] is False
    resp = await edge.client.put(
        f"/admin/projects/{pid}/keys/not-a-key/budget", json={"limit": "1"}, headers=auth()
    )
    assert resp.status_code == 404
    assert resp.json()["code"] == "api_key_not_found"
    resp = await edge.client.get(
        f"/admin/projects/{pid}/usage?group_by=model&from=2025-02-01&to=2025-01-01", headers=auth()
    )
    assert resp.status_code == 400
    resp = await edge.client.get(f"/admin/projects/{pid}/usage?group_by=colour", headers=auth())
    assert resp.status_code == 400


async def test_a_top_up_is_applied_once_per_client_id(edge: Edge) -> None:
    pid = await _project_id(edge)
    path = f"/admin/projects/{pid}/credits/topups"
    body = {"topup_id": "invoice-42", "amount": "50.00", "note": "first"}
    first = (await edge.client.post(path, json=body, headers=auth())).json()
    again = (await edge.client.post(path, json=body, headers=auth())).json()
    assert first["applied"] is True and again["applied"] is False
    assert Decimal(first["balance"]) == Decimal(again["balance"]) == Decimal(50)
    credits = (await edge.client.get(f"/admin/projects/{pid}/credits", headers=auth())).json()
    assert Decimal(credits["credits"]["balance"]) == Decimal(50)
    spend = (await edge.client.get(f"/admin/projects/{pid}/spend", headers=auth())).json()
    assert spend["project_id"] == pid and len(spend["period"]) == 7
    assert Decimal(spend["credits"]["remaining"]) <= Decimal(50)


async def test_usage_reports_and_one_requests_line_items(edge: Edge, nats_url: str) -> None:
    pid = await _project_id(edge)
    event = UsageRecorded(
        request_id="req-admin-usage-1",
        project_id=pid,
        api_key_id=edge.key_ids["all"],
        operation="chat.completions",
        model="mock-chat",
        provider="fake",
        deployment="fake/mock-chat",
        usage=TokenUsage(prompt_tokens=100, completion_tokens=20, cached_tokens=40),
    )
    await publish_usage(nats_url, event)
    path = f"/admin/projects/{pid}/usage/requests/{event.request_id}"

    async def billed() -> httpx.Response | None:
        resp = await edge.client.get(path, headers=auth())
        return resp if resp.status_code == 200 else None

    cost = (await wait_for(billed, timeout_s=15)).json()
    items = {item["sku"]: item for item in cost["entries"][0]["line_items"]}
    assert items["inference.chat_completions.in"]["quantity"] == 60
    assert items["inference.chat_completions.in.cached"]["quantity"] == 40
    assert items["inference.chat_completions.out"]["quantity"] == 20
    total = sum(Decimal(item["amount"]) for item in items.values())
    assert Decimal(cost["total_amount"]) == total
    # 60 * 0.00000015 + 40 * 0.000000075 + 20 * 0.0000006
    assert total == Decimal("0.000024")

    day = event.occurred_at.date().isoformat()
    for group_by, group in (("model", "mock-chat"), ("day", day), ("key", edge.key_ids["all"])):
        resp = await edge.client.get(
            f"/admin/projects/{pid}/usage",
            params={"group_by": group_by, "from": day, "to": day},
            headers=auth(),
        )
        assert resp.status_code == 200, resp.text
        report = resp.json()
        assert [row["group"] for row in report["rows"]] == [group]
        assert report["rows"][0]["requests"] == 1
        assert Decimal(report["total"]) == total
        assert report["from"].startswith(day)

    unknown = await edge.client.get(f"/admin/projects/{pid}/usage/requests/nope", headers=auth())
    assert unknown.status_code == 404
    assert unknown.json() == {
        "ok": False,
        "error": "No billed request with that id in this project.",
        "code": "request_not_found",
    }

    # Another project's admin: 403 on this project's path, 404 under its own.
    operator = {"authorization": f"Bearer {OPERATOR}"}
    other = (
        await edge.client.post("/admin/projects", json={"name": "other"}, headers=operator)
    ).json()
    other_key = (
        await edge.client.post(
            f"/admin/projects/{other['id']}/keys",
            json={"name": "o", "scopes": ["admin"]},
            headers=operator,
        )
    ).json()["key"]
    other_auth = {"authorization": f"Bearer {other_key}"}
    assert (await edge.client.get(path, headers=other_auth)).status_code == 403
    foreign = await edge.client.get(
        f"/admin/projects/{other['id']}/usage/requests/{event.request_id}", headers=other_auth
    )
    assert foreign.status_code == 404
    assert pid not in foreign.text and "mock-chat" not in foreign.text


async def _endpoint_budgets(edge: Edge, pid: str, slug: str) -> list[tuple[str, Decimal]]:
    resp = await edge.client.get(f"/admin/projects/{pid}/spend?endpoint={slug}", headers=auth())
    assert resp.status_code == 200, resp.text
    assert resp.json()["endpoint_spend"] is not None
    return [(b["scope"], Decimal(b["limit"])) for b in resp.json()["budgets"]]


async def test_an_endpoints_monthly_budget_is_set_changed_and_removed_in_billing(
    edge: Edge, nats_url: str
) -> None:
    pid = await _project_id(edge)
    base = f"/admin/projects/{pid}/endpoints"
    body = {"slug": "capped", "model": "mock-chat", "monthly_budget": "2.50"}
    created = await edge.client.post(base, json=body, headers=auth())
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    assert await _endpoint_budgets(edge, pid, "capped") == [("endpoint", Decimal("2.50"))]
    changed = await edge.client.patch(
        f"{base}/capped", json={"monthly_budget": "1"}, headers=auth()
    )
    assert changed.status_code == 200, changed.text
    assert Decimal(changed.json()["monthly_budget"]) == 1
    assert await _endpoint_budgets(edge, pid, "capped") == [("endpoint", Decimal(1))]
    untouched = await edge.client.patch(
        f"{base}/capped", json={"description": "kept"}, headers=auth()
    )
    assert untouched.status_code == 200, untouched.text
    assert await _endpoint_budgets(edge, pid, "capped") == [("endpoint", Decimal(1))]
    for bad in ("-1", "lots"):  # (14c accepts a JSON number too)
        resp = await edge.client.patch(
            f"{base}/capped", json={"monthly_budget": bad}, headers=auth()
        )
        assert resp.status_code == 400, (bad, resp.text)
    removed = await edge.client.patch(
        f"{base}/capped", json={"monthly_budget": None}, headers=auth()
    )
    assert removed.status_code == 200 and removed.json()["monthly_budget"] is None
    assert await _endpoint_budgets(edge, pid, "capped") == []

    await edge.client.patch(f"{base}/capped", json={"monthly_budget": "3"}, headers=auth())
    assert (await edge.client.delete(f"{base}/capped", headers=auth())).status_code == 204
    nc = await nats.connect(nats_url)
    try:
        query = wire.SpendQuery(project_id=pid, endpoint_id=endpoint_id)
        msg = await nc.request(subjects.BILLING_SPEND_GET, query.to_bytes(), timeout=5)
    finally:
        await nc.close()
    assert wire.SpendReport.model_validate_json(msg.data).budgets == []
    resp = await edge.client.get(f"/admin/projects/{pid}/spend?endpoint=capped", headers=auth())
    assert resp.status_code == 404 and resp.json()["code"] == "endpoint_not_found"


async def test_billing_not_answering_is_a_503_in_the_admin_shape(
    settings: EdgeSettings, tmp_path: Path
) -> None:
    with nats_server(tmp_path / "nats") as lonely:
        settings = settings.model_copy(update={"nats_url": lonely})
        await seed_keys(settings.resolved_database_url())
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                pid = (await client.get("/admin/projects", headers=auth())).json()["data"][0]["id"]
                for method, path, body in (
                    ("GET", "budget", None),
                    ("PUT", "budget", {"limit": "1"}),
                    ("POST", "credits/topups", {"topup_id": "t", "amount": "1"}),
                    ("GET", "usage?group_by=day", None),
                    ("GET", "usage/requests/r1", None),
                ):
                    resp = await client.request(
                        method, f"/admin/projects/{pid}/{path}", json=body, headers=auth()
                    )
                    assert resp.status_code == 503, (path, resp.text)
                    assert resp.json() == {
                        "ok": False,
                        "error": "Billing is unavailable. Please retry.",
                        "code": "billing_unavailable",
                    }
                # An endpoint with a budget is saved, and the 503 says its budget is not set.
                body = {"slug": "capped", "model": "mock-chat", "monthly_budget": "1"}
                base = f"/admin/projects/{pid}/endpoints"
                resp = await client.post(base, json=body, headers=auth())
                assert resp.status_code == 503, resp.text
                assert resp.json()["code"] == "billing_unavailable"
                assert "saved" in resp.json()["error"] and "not in force" in resp.json()["error"]
                shown = await client.get(f"{base}/capped", headers=auth())
                assert shown.status_code == 200 and Decimal(shown.json()["monthly_budget"]) == 1
