"""Seed 001's pipeline on the Gateway API over the real stack: prompt templates with
``variables``, the input schema, the per-request token cap, guardrails on input and output
(streams included), the output schema (unary and stream), endpoint fallbacks, every row of
seed 001's error table (streams: the same status and body before the first byte), and that
a call refused early reaches no provider and leaves no ledger entry.

Endpoint settings are made through the admin API (``EndpointCreate``). The fake provider
answers a last user message starting with ``[verbatim]`` with the rest of it, so a test
chooses what the model says (JSON for schemas, an e-mail address for PII).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from devtools.stack import Stack
from tests.integration.helpers import expected_reply, fake_requests, ledger_entry, poll, sse_data
from tests.integration.test_gateway_api import WRONG_PROJECT, Tenant, _bearer

pytestmark = pytest.mark.timeout(180)

EMAIL = "alice.smith@mail.example.org"


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _marker() -> str:
    return secrets.token_hex(6)


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["ok"] is False and isinstance(body["error"], str) and body["error"], body
    assert body["code"] == code, body
    return dict(body)


def _sent(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """The bodies carrying ``marker`` that reached the fake provider."""
    return [r["body"] for r in fake_requests(stack.fake_provider_url, marker)]


def _stream_text(resp: httpx.Response) -> tuple[str, list[str]]:
    """The streamed content and the SSE payloads."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    data = sse_data(resp.text.splitlines())
    text = ""
    for d in data:
        if d.startswith("{") and "choices" in d:
            for choice in orjson.loads(d)["choices"]:
                text += choice["delta"].get("content") or ""
    return text, data


def _guardrail_metric(http: httpx.Client, **labels: str) -> float:
    text = http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("switchyard_edge_guardrail_triggered_total{"):
            found = line[line.index("{") + 1 : line.index("}")]
            if ",".join(sorted(found.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- prompt template, variables, input schema -----------------------------------------------------


def test_a_template_is_filled_from_variables_and_checked_by_the_input_schema(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint(
        "translate",
        system_prompt="You translate.",
        prompt_template="Translate {{text}} into {{ lang }} ({{count}} words).",
        input_schema={
            "type": "object",
            "required": ["text", "lang"],
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "lang": {"enum": ["fr", "de"]},
                "count": {"type": "integer"},
            },
        },
    )
    marker = _marker()
    resp = tenant.call("translate", {"variables": {"text": marker, "lang": "fr", "count": 2}})
    assert resp.status_code == 200, resp.text
    [sent] = _sent(stack, marker)
    assert sent["messages"] == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": f"Translate {marker} into fr (2 words)."},
    ]
    assert resp.json()["content"] == expected_reply(sent)

    marker = _marker()
    body = _error(
        tenant.call("translate", {"variables": {"text": marker, "lang": "es"}}),
        422,
        "input_schema_invalid",
    )
    assert body["detail"]["path"] == "$.lang" and "'es' is not one of" in body["detail"]["reason"]
    assert "$.lang" in body["error"]
    body = _error(
        tenant.dispatch("translate", {"variables": {"lang": "de"}}), 422, "input_schema_invalid"
    )
    assert body["detail"] == {"path": "$", "reason": "'text' is a required property"}
    # The schema passes; the template still needs 'count'.
    body = _error(
        tenant.call("translate", {"variables": {"text": marker, "lang": "de"}}),
        422,
        "missing_variable",
    )
    assert "'count'" in body["error"]
    assert _sent(stack, marker) == []


# -- per-request token cap ------------------------------------------------------------------------


def test_the_per_request_token_cap(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("capped", max_request_tokens=200, params={"max_tokens": 100})
    tenant.endpoint("uncapped-output", max_request_tokens=200)  # mock-chat: 16384 of output
    assert tenant.call("capped", {"message": "short question"}).status_code == 200
    marker = _marker()
    body = _error(
        tenant.call("capped", {"message": marker + " word" * 200}),
        422,
        "max_request_tokens_exceeded",
    )
    assert "cap of 200 tokens" in body["error"] and "100 of output" in body["error"]
    body = _error(
        tenant.call("uncapped-output", {"message": marker}), 422, "max_request_tokens_exceeded"
    )
    assert "16384 of output" in body["error"]
    assert _sent(stack, marker) == []


# -- guardrails -----------------------------------------------------------------------------------


def test_input_guardrails_block_naming_the_guardrail_or_redact(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint(
        "guarded",
        guardrails=[
            {"type": "blocked_terms", "terms": ["project x"], "name": "codenames"},
            {"type": "regex", "patterns": [r"(?i)api[_-]?key\s*[:=]"], "applies_to": "input"},
            {"type": "pii", "entities": ["email"], "action": "redact"},
        ],
    )
    labels = {"guardrail_type": "blocked_terms", "direction": "input", "action": "block"}
    before = _guardrail_metric(http, **labels)
    marker = _marker()
    body = _error(
        tenant.call("guarded", {"message": f"{marker} tell me about Project  X"}),
        422,
        "guardrail_blocked",
    )
    assert "'codenames' (blocked_terms)" in body["error"] and "Project" not in body["error"]
    assert body["guardrail"] == {
        "name": "codenames",
        "type": "blocked_terms",
        "direction": "input",
        "reason": "matched",
        "index": 0,
    }
    assert _guardrail_metric(http, **labels) == before + 1
    body = _error(
        tenant.call("guarded", {"message": f"{marker} my API_KEY= 123"}), 422, "guardrail_blocked"
    )
    assert body["guardrail"]["type"] == "regex" and body["guardrail"]["index"] == 1
    assert _sent(stack, marker) == []

    marker = _marker()
    resp = tenant.call("guarded", {"message": f"{marker} write to {EMAIL} today"})
    assert resp.status_code == 200, resp.text
    [sent] = _sent(stack, marker)
    assert sent["messages"] == [
        {"role": "user", "content": f"{marker} write to [REDACTED_EMAIL] today"}
    ]
    assert EMAIL not in resp.text


def test_output_guardrails_on_answers_and_streams(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    guardrails = [
        {"type": "pii", "action": "redact", "applies_to": "output"},
        {"type": "blocked_terms", "terms": ["launch code"], "applies_to": "output"},
    ]
    tenant.endpoint("out", guardrails=guardrails, streaming_enabled=True)
    labels = {"guardrail_type": "pii", "direction": "output", "action": "redact"}
    before = _guardrail_metric(http, **labels)
    said = f"Reach {EMAIL} or call (415) 555-2671 soon"
    resp = tenant.call("out", {"message": f"[verbatim]{said}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] == "Reach [REDACTED_EMAIL] or call [REDACTED_PHONE] soon"
    assert _guardrail_metric(http, **labels) == before + 1
    # The input is not checked by an output guardrail: the provider got the address.
    assert fake_requests(stack.fake_provider_url, EMAIL)

    # Streamed, the fake sends a word a chunk: the address arrives whole in one, the phone
    # number split over three ("(415)", " 555-2671"...) and is still redacted.
    text, data = _stream_text(tenant.call("out", {"message": f"[verbatim]{said}", "stream": True}))
    assert text == "Reach [REDACTED_EMAIL] or call [REDACTED_PHONE] soon"
    assert data[-1] == "[DONE]" and EMAIL not in "".join(data) and "555" not in "".join(data)

    body = _error(
        tenant.call("out", {"message": "[verbatim]the launch code is 0000"}),
        422,
        "guardrail_blocked",
    )
    assert body["guardrail"]["direction"] == "output"
    # Mid-stream: the text before it was sent, then an error event and no [DONE].
    text, data = _stream_text(
        tenant.call("out", {"message": "[verbatim]so the launch code is 0000", "stream": True})
    )
    assert "launch" not in text and data[-1] != "[DONE]"
    assert orjson.loads(data[-1])["error"]["code"] == "guardrail_blocked"


# -- output schema --------------------------------------------------------------------------------


def test_the_output_schema_on_answers_and_streams(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    schema = {
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    }
    tenant.endpoint("typed", output_schema=schema, streaming_enabled=True)
    good = '{"name": "Ada", "age": 36}'
    resp = tenant.call("typed", {"message": f"[verbatim]{good}"})
    assert resp.status_code == 200, resp.text
    assert orjson.loads(resp.json()["content"]) == {"name": "Ada", "age": 36}

    body = _error(
        tenant.call("typed", {"message": '[verbatim]{"name": "Ada", "age": -1}'}),
        502,
        "output_schema_invalid",
    )
    assert body["detail"] == {"path": "$.age", "reason": "-1 is less than the minimum of 0"}
    body = _error(tenant.call("typed", {"message": "hello"}), 502, "output_schema_invalid")
    assert body["detail"]["path"] == "$" and "not JSON" in body["detail"]["reason"]

    text, data = _stream_text(
        tenant.call("typed", {"message": f"[verbatim]{good}", "stream": True})
    )
    assert orjson.loads(text) == {"name": "Ada", "age": 36} and data[-1] == "[DONE]"
    # A stream's content went out before it could be checked: it ends with an error event
    # carrying the validator's detail, and no [DONE].
    text, data = _stream_text(
        tenant.call("typed", {"message": '[verbatim]{"name": 7, "age": 1}', "stream": True})
    )
    assert text == '{"name": 7, "age": 1}' and "[DONE]" not in data
    error = orjson.loads(data[-1])["error"]
    assert error["code"] == "output_schema_invalid" and "$.name" in error["message"]


# -- fallbacks ------------------------------------------------------------------------------------


def test_fallbacks_answer_when_the_model_fails_after_failover(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("backed", model="pipe-down", fallbacks=["mock-chat"], streaming_enabled=True)
    marker = _marker()
    resp = tenant.call("backed", {"message": f"fb {marker}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "mock-chat" and body["meta"]["provider"] == "fake"
    # Both of pipe-down's deployments failed (or their breakers skipped them), then one more.
    assert body["meta"]["attempts"] >= 2
    assert str(body["meta"]["attempts"]) == resp.headers["x-switchyard-attempts"]
    seen = fake_requests(stack.fake_provider_url, marker)
    [sent] = [r["body"] for r in seen if r["path"] == "/v1/chat/completions"]
    assert body["content"] == expected_reply(sent)

    text, data = _stream_text(tenant.call("backed", {"message": f"fb {marker}", "stream": True}))
    assert text.startswith(f"fb {marker}") and data[-1] == "[DONE]"

    tenant.endpoint("doomed", model="pipe-down", fallbacks=["pipe-down-too"])
    for stream in (False, True):
        body = _error(
            tenant.call("doomed", {"message": "x", "stream": stream}), 502, "all_providers_failed"
        )
        assert "pipe-down:" in body["error"] and "pipe-down-too:" in body["error"]
        assert [a["model"] for a in body["attempts"]][-1] == "pipe-down-too"
        assert {a["model"] for a in body["attempts"]} == {"pipe-down", "pipe-down-too"}


def test_a_fallback_the_key_may_not_call_is_never_called(stack: Stack, http: httpx.Client) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("fenced", model="pipe-down", fallbacks=["mock-chat"])
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    resp = http.post(
        f"/admin/projects/{tenant.id}/keys",
        json={"name": "only-pipe-down", "scopes": ["chat"], "allowed_models": ["pipe-down"]},
        headers=operator,
    )
    assert resp.status_code == 201, resp.text
    marker = _marker()
    answer = http.post(
        f"/api/{tenant.id}/fenced",
        json={"message": f"fenced {marker}"},
        headers=_bearer(resp.json()["key"]),
    )
    body = _error(answer, 502, "all_providers_failed")
    assert "mock-chat: This API key is not allowed to use the model" in body["error"], body
    # pipe-down's failing deployments are the fake's fault paths; the fallback's plain path
    # was never asked.
    seen = fake_requests(stack.fake_provider_url, marker)
    assert [r for r in seen if r["path"] == "/v1/chat/completions"] == [], seen
    # The project's own key (no allowed_models) reaches the fallback.
    assert tenant.call("fenced", {"message": f"open {marker}"}).status_code == 200


# -- seed 001's error table -----------------------------------------------------------------------


def _budgeted(http: httpx.Client, stack: Stack) -> Tenant:
    tenant = Tenant(http, stack)
    resp = http.put(
        f"/admin/projects/{tenant.id}/budget",
        json={"limit": "0.000000001", "period": "monthly"},
        headers=tenant.headers,
    )
    assert resp.status_code == 200, resp.text
    return tenant


def test_seed_001_error_table_unary_and_before_a_streams_first_byte(
    stack: Stack, http: httpx.Client
) -> None:
    a, other = Tenant(http, stack), Tenant(http, stack)
    broke = _budgeted(http, stack)
    channel = Tenant(http, stack, type="channel")
    live = {"streaming_enabled": True}
    a.endpoint("plain", **live)
    a.endpoint("off", active=False, **live)
    a.endpoint("capped", max_request_tokens=50, params={"max_tokens": 40}, **live)
    a.endpoint("guarded", guardrails=[{"type": "blocked_terms", "terms": ["nope"]}], **live)
    a.endpoint("schema", input_schema={"type": "object", "required": ["q"]}, **live)
    a.endpoint("down", model="pipe-down", **live)
    a.endpoint("typed", output_schema={"type": "object"}, **live)
    broke.endpoint("plain", params={"max_tokens": 20}, **live)
    embed_only = a.new_key(stack, ["embeddings"])
    marker = _marker()
    ok = {"message": f"hi {marker}"}

    rows: list[tuple[str, httpx.Client | Tenant, str, dict[str, Any], dict[str, str], int, str]]
    rows = [
        ("no bearer", http, f"/api/{a.id}/plain", ok, {}, 401, "missing_bearer"),
        ("other project", http, f"/api/{a.id}/plain", ok, other.headers, 403, "wrong_project"),
        (
            "scope",
            http,
            f"/api/{a.id}/plain",
            ok,
            _bearer(embed_only["key"]),
            403,
            "insufficient_scope",
        ),
        ("not found", http, f"/api/{a.id}/missing", ok, a.headers, 404, "endpoint_not_found"),
        ("inactive", http, f"/api/{a.id}/off", ok, a.headers, 404, "endpoint_not_found"),
        (
            "cap",
            http,
            f"/api/{a.id}/capped",
            {"message": "w " * 100},
            a.headers,
            422,
            "max_request_tokens_exceeded",
        ),
        ("budget", http, f"/api/{broke.id}/plain", ok, broke.headers, 422, "insufficient_quota"),
        (
            "guardrail",
            http,
            f"/api/{a.id}/guarded",
            {"message": "nope"},
            a.headers,
            422,
            "guardrail_blocked",
        ),
        ("input schema", http, f"/api/{a.id}/schema", ok, a.headers, 422, "input_schema_invalid"),
        (
            "provider",
            http,
            f"/api/{a.id}/down",
            {"message": "hi"},
            a.headers,
            502,
            "all_providers_failed",
        ),
        (
            "wrong type",
            http,
            f"/api/{channel.id}/plain",
            ok,
            channel.headers,
            400,
            "wrong_project_type",
        ),
    ]
    for name, _, path, payload, headers, status, code in rows:
        unary = http.post(path, json=payload, headers=headers)
        body = _error(unary, status, code if name != "no bearer" else unary.json()["code"])
        if name == "no bearer":
            assert body["error"] == "Missing Bearer token."
        if name == "other project":
            assert body == {"ok": False, "error": WRONG_PROJECT, "code": "wrong_project"}
        if name == "budget":
            assert "budget" in body["error"]
        streamed = http.post(path, json={**payload, "stream": True}, headers=headers)
        assert streamed.status_code == status, (name, streamed.text)
        assert streamed.headers["content-type"] == "application/json", name
        first, second = streamed.json(), dict(body)
        if name == "provider":  # each attempt's message may differ between two calls
            first.pop("attempts"), second.pop("attempts")
            first.pop("error"), second.pop("error")
        assert first == second, name

    body = _error(a.call("typed", {"message": "not json"}), 502, "output_schema_invalid")
    assert body["detail"]["path"] == "$"
    # No row but the provider's reached a provider, unary or streamed.
    assert _sent(stack, marker) == []


# -- a refused call pays for nothing later --------------------------------------------------------


def test_a_call_refused_early_reaches_no_provider_and_no_ledger(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint("capped", max_request_tokens=60, params={"max_tokens": 20})
    tenant.endpoint("guarded", guardrails=[{"type": "pii", "entities": ["credit_card"]}])
    tenant.endpoint("schema", input_schema={"type": "object", "required": ["q"]})
    tenant.endpoint("template", prompt_template="About {{topic}}")
    broke = _budgeted(http, stack)
    broke.endpoint("plain", params={"max_tokens": 20})
    marker = _marker()
    refused = [
        (tenant, "capped", {"message": f"{marker} " + "word " * 60}, "max_request_tokens_exceeded"),
        (tenant, "guarded", {"message": f"{marker} card 4111 1111 1111 1111"}, "guardrail_blocked"),
        (tenant, "schema", {"message": marker}, "input_schema_invalid"),
        (tenant, "template", {"message": marker, "variables": {}}, "missing_variable"),
        (broke, "plain", {"message": marker}, "insufficient_quota"),
    ]
    request_ids = []
    for who, slug, payload, code in refused:
        resp = who.call(slug, payload)
        _error(resp, 422, code)
        request_ids.append(resp.headers["x-request-id"])
    assert _sent(stack, marker) == []
    # A call billed after them: once its ledger entry is written, theirs would be too.
    paid = tenant.call("capped", {"message": "ok"})
    assert paid.status_code == 200, paid.text
    billing = stack.database_url("billing")
    poll(lambda: ledger_entry(billing, paid.headers["x-request-id"]), timeout=30)
    assert [ledger_entry(billing, r) for r in request_ids] == [None] * len(refused)
    assert all(re.fullmatch(r"[\w-]+", r) for r in request_ids)


# -- sessions inside the pipeline -----------------------------------------------------------------


def test_a_session_keeps_the_template_turn_and_the_redacted_reply(
    stack: Stack, http: httpx.Client
) -> None:
    tenant = Tenant(http, stack)
    tenant.endpoint(
        "memo",
        sessions_enabled=True,
        streaming_enabled=True,
        prompt_template="[verbatim]{{note}}",
        guardrails=[
            {"type": "pii", "entities": ["email"], "action": "redact", "applies_to": "output"}
        ],
    )
    marker = _marker()
    first = tenant.call("memo", {"variables": {"note": f"{marker} write {EMAIL}"}})
    assert first.status_code == 200, first.text
    assert first.json()["content"] == f"{marker} write [REDACTED_EMAIL]"
    session_id = first.json()["meta"]["session_id"]
    assert first.headers["x-switchyard-session-id"] == session_id

    text, data = _stream_text(
        tenant.call(
            "memo",
            {"variables": {"note": f"again {EMAIL}"}, "session_id": session_id, "stream": True},
        )
    )
    assert text == "again [REDACTED_EMAIL]" and data[-1] == "[DONE]"
    # The second call carried the first turn as stored: the rendered template, then the reply
    # as the client got it (redacted).
    [sent] = [
        b
        for b in _sent(stack, marker)
        if b["messages"][-1]["content"].startswith("[verbatim]again")
    ]
    assert sent["messages"] == [
        {"role": "user", "content": f"[verbatim]{marker} write {EMAIL}"},
        {"role": "assistant", "content": f"{marker} write [REDACTED_EMAIL]"},
        {"role": "user", "content": f"[verbatim]again {EMAIL}"},
    ]
    # And the stream's turn was stored before [DONE]: the next call sees it at once.
    third = tenant.call(
        "memo", {"variables": {"note": f"{marker} third"}, "session_id": session_id}
    )
    assert third.status_code == 200, third.text
    [last] = [b for b in _sent(stack, marker) if b["messages"][-1]["content"].endswith("third")]
    assert last["messages"][3] == {"role": "assistant", "content": "again [REDACTED_EMAIL]"}
