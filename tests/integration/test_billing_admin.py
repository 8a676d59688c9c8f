"""Billing through the admin API and CLI on a running stack: credits, budgets, usage, one request.

A project with a managed credential tops up credits, gets budgets, makes
calls; then its usage by model and by day, and each call's line items, are
read back through ``/admin`` and ``switchyard`` and compared with what the
call itself returned (``generation_context``) and with billing's ledger.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from devtools.stack import Stack
from edge.cli import app as cli_app
from tests.integration.helpers import fake_requests, ledger_entry, poll

pytestmark = pytest.mark.timeout(120)

PROVIDER_KEY = "sk-proj-BILLADMIN-" + secrets.token_hex(12)


def _operator(stack: Stack) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.config.admin_token}"}


def _project(http: httpx.Client, stack: Stack, name: str) -> tuple[str, dict[str, str]]:
    """A new project and the headers of its chat+admin key."""
    pid = http.post("/admin/projects", json={"name": name}, headers=_operator(stack)).json()["id"]
    key = http.post(
        f"/admin/projects/{pid}/keys",
        json={"name": "k", "scopes": ["chat", "admin"]},
        headers=_operator(stack),
    ).json()
    return pid, {"authorization": f"Bearer {key['key']}", "x-key-id": key["id"]}


@pytest.fixture
def http(base_url: str) -> Any:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _chat(http: httpx.Client, headers: dict[str, str], *, stream: bool, marker: str) -> Any:
    """One call; its request id and its generation_context (decimals exact), if any."""
    body: dict[str, Any] = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": f"price me {marker}"}],
        "max_tokens": 50,
    }
    if stream:
        body["stream"] = True
    auth = {"authorization": headers["authorization"]}
    resp = http.post("/v1/chat/completions", json=body, headers=auth)
    assert resp.status_code == 200, resp.text
    if not stream:
        answer = json.loads(resp.text, parse_float=Decimal)
        return resp.headers["x-request-id"], answer.get("generation_context")
    frames = [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame, parse_float=Decimal) for frame in frames[:-1]]
    contexts = [c["generation_context"] for c in chunks if "generation_context" in c]
    return resp.headers["x-request-id"], contexts[-1] if contexts else None


def _cli(stack: Stack, *args: str) -> Any:
    """``switchyard <args>`` (in-process) as the operator; its JSON answer."""
    env = {"SWITCHYARD_URL": stack.base_url, "SWITCHYARD_ADMIN_TOKEN": stack.config.admin_token}
    result = CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _found(resp: httpx.Response) -> Any:
    return resp.json() if resp.status_code == 200 else None


def _items(items: list[dict[str, Any]]) -> dict[str, tuple[int, Decimal, Decimal]]:
    return {
        i["sku"]: (int(i["quantity"]), Decimal(str(i["unit_price"])), Decimal(str(i["amount"])))
        for i in items
    }


def test_credits_budgets_usage_and_one_requests_cost(stack: Stack, http: httpx.Client) -> None:
    suffix = secrets.token_hex(4)
    pid, headers = _project(http, stack, f"billing-admin-{suffix}")
    other_pid, other_headers = _project(http, stack, f"billing-other-{suffix}")
    admin = {"authorization": headers["authorization"]}
    resp = http.post(
        f"/admin/projects/{pid}/credentials",
        json={"provider": "fake", "api_key": PROVIDER_KEY},
        headers=_operator(stack),
    )
    assert resp.status_code == 201, resp.text

    topup = {"topup_id": f"inv-{suffix}", "amount": "5.00"}
    first = http.post(f"/admin/projects/{pid}/credits/topups", json=topup, headers=admin).json()
    again = http.post(f"/admin/projects/{pid}/credits/topups", json=topup, headers=admin).json()
    assert (first["applied"], again["applied"]) == (True, False)
    assert Decimal(again["balance"]) == Decimal(5)
    budget = http.put(f"/admin/projects/{pid}/budget", json={"limit": "10.00"}, headers=admin)
    assert budget.status_code == 200, budget.text
    key_budget = http.put(
        f"/admin/projects/{pid}/keys/{headers['x-key-id']}/budget",
        json={"limit": "2.5"},
        headers=admin,
    )
    assert Decimal(key_budget.json()["budget"]["limit"]) == Decimal("2.5")

    calls = [_chat(http, headers, stream=stream, marker=suffix) for stream in (False, True, False)]

    total = Decimal(0)
    for request_id, context in calls:
        path = f"/admin/projects/{pid}/usage/requests/{request_id}"
        cost = poll(lambda path=path: _found(http.get(path, headers=admin)))
        (entry,) = cost["entries"]
        assert entry["model"] == "mock-chat" and entry["request_id"] == request_id
        items = _items(entry["line_items"])
        assert sum(amount for _, _, amount in items.values()) == Decimal(cost["total_amount"])
        total += Decimal(cost["total_amount"])
        row = ledger_entry(stack.database_url("billing"), request_id)
        assert row is not None
        assert items == {
            li.sku: (li.quantity, Decimal(str(li.unit_price)), Decimal(str(li.amount)))
            for li in row[1]
        }
        # What the call itself returned is what the ledger holds.
        assert context is not None, "no generation_context in the answer"
        assert _items(context["generated_usage"]) == items
        # Another project's admin: its own path says "not found", this one's is forbidden.
        foreign = http.get(
            f"/admin/projects/{other_pid}/usage/requests/{request_id}", headers=other_headers
        )
        assert foreign.status_code == 404 and request_id not in foreign.text
        assert http.get(path, headers=other_headers).status_code == 403

    today = datetime.now(UTC).date().isoformat()
    by_model = http.get(
        f"/admin/projects/{pid}/usage", params={"group_by": "model"}, headers=admin
    ).json()
    assert [(r["group"], r["requests"]) for r in by_model["rows"]] == [("mock-chat", 3)]
    assert Decimal(by_model["total"]) == total
    by_day = _cli(stack, "usage", "report", pid, "--by", "day", "--from", today, "--to", today)
    assert [(r["group"], r["requests"]) for r in by_day["rows"]] == [(today, 3)]
    assert Decimal(by_day["total"]) == total

    shown = _cli(stack, "budgets", "show", pid)
    assert Decimal(shown["budget"]["limit"]) == Decimal(10)
    assert Decimal(shown["spent"]) == total
    credits = _cli(stack, "credits", "show", pid)["credits"]
    assert Decimal(credits["balance"]) == Decimal(5) - total
    one = _cli(stack, "usage", "request", pid, calls[0][0])
    assert Decimal(one["total_amount"]) > 0
    spend = http.get(f"/admin/projects/{pid}/spend", headers=admin).json()
    assert Decimal(spend["project_spend"]) == total


def test_calls_of_a_project_with_a_managed_credential_reach_the_provider_with_it(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    suffix = secrets.token_hex(4)
    pid, headers = _project(http, stack, f"managed-{suffix}")
    http.post(
        f"/admin/projects/{pid}/credentials",
        json={"provider": "fake", "api_key": PROVIDER_KEY},
        headers=_operator(stack),
    )
    marker = f"managed-{suffix}"
    _chat(http, headers, stream=False, marker=marker)
    _chat(http, headers, stream=True, marker=marker)
    seen = fake_requests(fake_provider_url, marker)
    assert len(seen) == 2
    expected = hashlib.sha256(PROVIDER_KEY.encode()).hexdigest()
    assert [r["bearer_sha256"] for r in seen] == [expected, expected]


def test_a_project_can_turn_generation_context_off(stack: Stack, http: httpx.Client) -> None:
    pid, headers = _project(http, stack, f"plain-{secrets.token_hex(4)}")
    off = {"settings": {"generation_context": False}}
    admin = {"authorization": headers["authorization"]}
    assert http.patch(f"/admin/projects/{pid}", json=off, headers=admin).status_code == 200
    for stream in (False, True):
        _, context = _chat(http, headers, stream=stream, marker="plain")
        assert context is None


def test_no_log_of_the_stack_contains_the_managed_key(stack: Stack) -> None:
    """Runs after the calls above: the key went through edge and router by now."""
    for path in sorted(stack.log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        assert PROVIDER_KEY not in text, path.name
        assert PROVIDER_KEY[-12:] not in text, path.name
