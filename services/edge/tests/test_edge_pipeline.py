"""Seed 001's pipeline (``edge.pipeline.run``) with a scripted ``Upstream``: each step, the
order (a refusing step spares every later one), fallbacks, and the output checks on unary
answers and on streams."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

import orjson
import pytest

from edge.auth import KeyEntry
from edge.endpoints import EndpointView
from edge.metrics import EdgeMetrics
from edge.pipeline import run as pipeline
from edge.pipeline.call import Completion, GatewayCall, StreamShaper, UpstreamAnswer
from edge.pipeline.fallbacks import ModelsFailed
from edge.pipeline.guardrails import compile_guardrails
from edge.pipeline.limits_step import ModelNotAllowed
from edge.pipeline.output import OutputStream
from edge.pipeline.schemas import compile_schema
from edge.pipeline.template import fill, placeholders, render
from edge.sessions_client import SessionsClient
from gateway.common.v1 import types_pb2
from gateway_common.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    GatewayError,
    GuardrailBlocked,
    InputSchemaInvalid,
    InvalidRequest,
    ModelNotFound,
    OutputSchemaInvalid,
    ProviderUnavailable,
)

pytestmark = pytest.mark.timeout(30)

KEY = KeyEntry(key_id="k1", project_id="p1", scopes=frozenset({"chat"}))
EMAIL = "alice.smith@mail.example.org"


def _completion(content: str | None) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "model": "served",
            "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    )


class Upstream:
    """Records each attempt; answers ``content`` (or the body, by default), or raises the
    error scripted for that model."""

    def __init__(
        self, content: str | None = None, errors: Mapping[str, GatewayError] | None = None
    ):
        self.content = content
        self.errors = dict(errors or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.shapers: list[StreamShaper | None] = []
        #: Raised by the budget step's check (None: the budget admits).
        self.budget_error: GatewayError | None = None
        self.budget_checks: list[tuple[str, dict[str, Any]]] = []

    async def check_budget(self, model: str, body: bytes) -> None:
        self.budget_checks.append((model, orjson.loads(body)))
        if self.budget_error is not None:
            raise self.budget_error

    def _attempt(self, model: str, body: bytes) -> None:
        self.calls.append((model, orjson.loads(body)))
        if model in self.errors:
            raise self.errors[model]

    async def complete(self, model: str, body: bytes) -> UpstreamAnswer:
        self._attempt(model, body)
        content = self.content if self.content is not None else body.decode()
        return UpstreamAnswer(_completion(content), {"x-switchyard-attempts": "1"})

    async def stream(self, model: str, body: bytes, shaper: StreamShaper | None) -> str:
        self._attempt(model, body)
        self.shapers.append(shaper)
        return "stream"


def _endpoint(**fields: Any) -> EndpointView:
    for name in ("input_schema", "output_schema"):
        if name in fields:
            fields[name] = compile_schema(fields[name], name)  # type: ignore[arg-type]
    if "guardrails" in fields:
        fields["guardrails"] = compile_guardrails(fields["guardrails"])
    if "params" in fields:
        fields["params"] = MappingProxyType(fields["params"])
    return EndpointView(endpoint_id="e1", slug="ep", model="mock-chat", **fields)


def _call(message: str | None = "hello", **fields: Any) -> GatewayCall:
    messages = () if message is None else ({"role": "user", "content": message},)
    return GatewayCall(key=KEY, request_id="r1", messages=messages, **fields)


class Catalog:
    def __init__(self, output_limit: int | None) -> None:
        self._output = output_limit

    def output_limit(self, model: str) -> int | None:
        return self._output

    def limits(self, model: str) -> tuple[int, int] | None:
        return None


def _env(metrics: EdgeMetrics | None = None, output_limit: int | None = 1000) -> Any:
    # No endpoint here has sessions on: the sessions client is never asked.
    return pipeline.PipelineEnv(
        metrics=metrics,
        catalog=Catalog(output_limit),
        max_messages=50,
        sessions=cast(SessionsClient, None),
    )


async def _run(
    call: GatewayCall, endpoint: EndpointView, upstream: Upstream, **env: Any
) -> pipeline.Outcome[str]:
    return await pipeline.run(call, endpoint, _env(**env), upstream)


def _guardrail_count(metrics: EdgeMetrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("switchyard_edge_guardrail_triggered_total", labels)
    return value or 0.0


# -- prompt template ------------------------------------------------------------------------------


def test_a_template_is_filled_from_the_variables() -> None:
    template = "Translate {{text}} to {{ lang }}; {{n}} {{flags}} {{text}} {single} {{ 9x }}"
    assert placeholders(template) == ["text", "lang", "n", "flags"]
    out = render(template, {"text": "{{lang}}", "lang": "fr", "n": 3, "flags": [True, None]})
    assert out == "Translate {{lang}} to fr; 3 [true,null] {{lang}} {single} {{ 9x }}"


def test_a_missing_variable_is_422_naming_it() -> None:
    with pytest.raises(InvalidRequest) as info:
        render("{{a}} and {{b}} and {{c}}", {"b": 1})
    err = info.value
    assert err.http_status == 422 and err.code == "missing_variable"
    assert err.param == "variables.a" and "'a', 'c'" in err.message
    assert fill("{{a}} {{b}}", {"b": "x"}) == "{{a}} x"


async def test_prompt_apply_orders_system_template_and_messages() -> None:
    endpoint = _endpoint(
        system_prompt="Be brief.",
        prompt_template="Summarize {{topic}}.",
        params={"temperature": 0.1},
    )
    upstream = Upstream()
    await _run(_call("and then?", variables={"topic": "tides"}), endpoint, upstream)
    model, body = upstream.calls[0]
    assert model == "mock-chat"
    assert body == {
        "model": "mock-chat",
        "temperature": 0.1,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Summarize tides."},
            {"role": "user", "content": "and then?"},
        ],
        "stream": False,
    }
    # Variables alone are a whole call when there is a template; without one, nothing to say.
    await _run(_call(None, variables={"topic": "moons"}), endpoint, upstream)
    assert upstream.calls[1][1]["messages"][-1] == {"role": "user", "content": "Summarize moons."}
    with pytest.raises(InvalidRequest) as info:
        await _run(_call(None), _endpoint(), upstream)
    assert info.value.http_status == 400 and "exactly one of" in info.value.message
    assert len(upstream.calls) == 2


# -- per-request cap ------------------------------------------------------------------------------


async def test_the_token_cap_counts_prompt_and_max_output() -> None:
    upstream = Upstream()
    capped = _endpoint(max_request_tokens=100, params={"max_tokens": 50})
    await _run(_call("short"), capped, upstream)
    with pytest.raises(InvalidRequest) as info:
        await _run(_call("x" * 600), capped, upstream)  # ~100 tokens + 50 of output
    err = info.value
    assert err.http_status == 422 and err.code == "max_request_tokens_exceeded"
    assert "cap of 100 tokens" in err.message and "50 of output" in err.message
    # Without max_tokens the model's largest output counts.
    with pytest.raises(InvalidRequest):
        await _run(_call("short"), _endpoint(max_request_tokens=100), upstream, output_limit=16384)
    await _run(_call("short"), _endpoint(max_request_tokens=100), upstream, output_limit=64)
    assert len(upstream.calls) == 2


# -- the order: a refusal spares the later steps --------------------------------------------------


async def test_each_refusal_spares_every_later_step() -> None:
    metrics = EdgeMetrics()
    endpoint = _endpoint(
        max_request_tokens=200,
        params={"max_tokens": 20},
        guardrails=[{"type": "blocked_terms", "terms": ["forbidden"], "name": "words"}],
        input_schema={"type": "object", "required": ["topic"]},
        prompt_template="About {{topic}} and {{other}}",
    )
    upstream = Upstream()
    cases: list[tuple[GatewayCall, type[GatewayError], str]] = [
        # The cap refuses first, though the text also has a blocked term and no variables.
        (_call("forbidden " + "x" * 2000), InvalidRequest, "max_request_tokens_exceeded"),
        # Guardrails before the input schema (variables are missing too).
        (_call("forbidden"), GuardrailBlocked, "guardrail_blocked"),
        # The input schema before the template (which also lacks 'other').
        (_call("fine"), InputSchemaInvalid, "input_schema_invalid"),
        (_call("fine", variables={"topic": "t"}), InvalidRequest, "missing_variable"),
    ]
    for call, kind, code in cases:
        with pytest.raises(kind) as info:
            await _run(call, endpoint, upstream, metrics=metrics)
        assert info.value.code == code
    assert upstream.calls == []
    # The guardrail fired once (the cap refused the first call before it looked).
    labels = {"guardrail_type": "blocked_terms", "direction": "input", "action": "block"}
    assert _guardrail_count(metrics, **labels) == 1


async def test_input_guardrails_name_the_guardrail_and_redact_messages_and_variables() -> None:
    endpoint = _endpoint(
        guardrails=[
            {"type": "max_length", "max_chars": 61, "applies_to": "input"},
            {"type": "pii", "action": "redact", "entities": ["email"]},
        ],
        input_schema={"type": "object", "properties": {"who": {"format": "email"}}},
        prompt_template="Write to {{who}}",
    )
    upstream = Upstream()
    call = _call(f"mail {EMAIL}", variables={"who": EMAIL})
    await _run(call, endpoint, upstream)
    messages = upstream.calls[0][1]["messages"]
    assert messages == [
        {"role": "user", "content": "Write to [REDACTED_EMAIL]"},
        {"role": "user", "content": "mail [REDACTED_EMAIL]"},
    ]
    with pytest.raises(GuardrailBlocked) as info:  # both texts count: 33 + 29 > 61
        await _run(_call(f"mail {EMAIL}", variables={"who": EMAIL + "x"}), endpoint, upstream)
    assert info.value.guardrail == "max_length" and info.value.direction == "input"
    assert info.value.index == 0
    assert "max_length" in info.value.message
    parts = {"role": "user", "content": [{"type": "text", "text": EMAIL}]}
    await _run(
        GatewayCall(key=KEY, request_id="r", messages=(parts,), variables={"who": "b@c.io"}),
        endpoint,
        upstream,
    )
    assert upstream.calls[-1][1]["messages"][-1]["content"] == [
        {"type": "text", "text": "[REDACTED_EMAIL]"}
    ]


async def test_an_invalid_variable_is_422_with_path_and_reason() -> None:
    endpoint = _endpoint(
        input_schema={
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
        }
    )
    with pytest.raises(InputSchemaInvalid) as info:
        await _run(_call(variables={"items": [1, "two"]}), endpoint, Upstream())
    assert info.value.path == "$.items[1]" and "'two' is not of type 'integer'" in info.value.reason
    assert info.value.param == "variables.items[1]" and info.value.http_status == 422


# -- fallbacks ------------------------------------------------------------------------------------


def _all_failed(*providers: str) -> AllProvidersFailed:
    failed = AllProvidersFailed([(f"{p}/d", ProviderUnavailable(f"{p} down")) for p in providers])
    failed.attempts = tuple(
        types_pb2.AttemptError(provider=p, deployment="d", http_status=502, code="x")
        for p in providers
    )
    return failed


async def test_fallbacks_are_tried_in_order_after_the_routers_failover() -> None:
    endpoint = _endpoint(fallbacks=("fb-1", "fb-2"))
    upstream = Upstream(
        content="ok", errors={"mock-chat": _all_failed("a", "b"), "fb-1": ModelNotFound("gone")}
    )
    outcome = await _run(_call(), endpoint, upstream)
    assert [m for m, _ in upstream.calls] == ["mock-chat", "fb-1", "fb-2"]
    assert [b["model"] for _, b in upstream.calls] == ["mock-chat", "fb-1", "fb-2"]
    assert outcome.model == "fb-2" and outcome.prior_attempts == 3
    assert isinstance(outcome.answer, Completion) and outcome.answer.content == "ok"

    upstream.errors["fb-2"] = _all_failed("c")
    with pytest.raises(ModelsFailed) as info:
        await _run(_call(), endpoint, upstream)
    err = info.value
    assert err.http_status == 502 and err.code == "all_providers_failed"
    assert [a.provider for a in err.attempts] == ["a", "b", "c"]
    assert [m for m, _ in err.failures] == ["mock-chat", "fb-1", "fb-2"]


async def test_a_fallback_the_key_may_not_call_is_skipped_and_listed() -> None:
    endpoint = _endpoint(fallbacks=("fb-1", "fb-2"))
    upstream = Upstream(
        content="ok",
        errors={"mock-chat": _all_failed("a"), "fb-1": ModelNotAllowed("not for this key")},
    )
    outcome = await _run(_call(), endpoint, upstream)
    assert outcome.model == "fb-2"
    upstream.errors["fb-2"] = _all_failed("c")
    with pytest.raises(ModelsFailed) as info:
        await _run(_call(), endpoint, upstream)
    assert [m for m, _ in info.value.failures] == ["mock-chat", "fb-1", "fb-2"]


async def test_an_exhausted_budget_is_refused_before_the_guardrails_and_the_schema() -> None:
    """Seed 001: rate limit -> budget -> guardrails -> input schema: the budget answers."""
    endpoint = _endpoint(
        system_prompt="Be brief.",
        guardrails=[{"type": "blocked_terms", "terms": ["nope"]}],
        input_schema={"type": "object", "required": ["q"]},
    )
    upstream = Upstream()
    upstream.budget_error = BudgetExceeded("Monthly budget exhausted.")
    with pytest.raises(BudgetExceeded):
        await _run(_call("nope"), endpoint, upstream)
    assert upstream.calls == []
    model, body = upstream.budget_checks[0]
    assert model == "mock-chat"
    assert [m["content"] for m in body["messages"]] == ["Be brief.", "nope"]
    # With budget left the guardrail is next.
    upstream.budget_error = None
    with pytest.raises(GuardrailBlocked):
        await _run(_call("nope"), endpoint, upstream)


async def test_a_refusal_that_is_no_provider_failure_tries_no_fallback() -> None:
    endpoint = _endpoint(fallbacks=("fb-1",))
    upstream = Upstream(errors={"mock-chat": BudgetExceeded("Monthly budget exhausted.")})
    with pytest.raises(BudgetExceeded):
        await _run(_call(), endpoint, upstream)
    assert [m for m, _ in upstream.calls] == ["mock-chat"]
    # Without fallbacks the router's error is passed on unchanged.
    upstream = Upstream(errors={"mock-chat": ProviderUnavailable("503")})
    with pytest.raises(ProviderUnavailable):
        await _run(_call(), _endpoint(), upstream)


# -- output checks --------------------------------------------------------------------------------


async def test_the_output_schema_on_a_unary_answer() -> None:
    endpoint = _endpoint(
        output_schema={"type": "object", "required": ["age"], "properties": {"age": {"minimum": 0}}}
    )
    outcome = await _run(_call(), endpoint, Upstream(content='{"age": 3}'))
    assert isinstance(outcome.answer, Completion) and outcome.answer.content == '{"age": 3}'
    for content, path, reason in (
        ('{"age": -1}', "$.age", "-1 is less than the minimum of 0"),
        ("not json", "$", "the content is not JSON"),
        ('{"name": 1}', "$", "'age' is a required property"),
    ):
        with pytest.raises(OutputSchemaInvalid) as info:
            await _run(_call(), endpoint, Upstream(content=content))
        assert info.value.http_status == 502 and info.value.path == path
        assert reason in info.value.reason


async def test_output_guardrails_redact_or_block_a_unary_answer() -> None:
    metrics = EdgeMetrics()
    redacting = _endpoint(guardrails=[{"type": "pii", "action": "redact", "applies_to": "output"}])
    outcome = await _run(
        _call(EMAIL), redacting, Upstream(content=f"write {EMAIL}"), metrics=metrics
    )
    assert isinstance(outcome.answer, Completion)
    assert outcome.answer.content == "write [REDACTED_EMAIL]"
    # It checks the output only: the input went through as it was.
    assert _guardrail_count(metrics, guardrail_type="pii", direction="output", action="redact") == 1
    blocking = _endpoint(guardrails=[{"type": "blocked_terms", "terms": ["secret"], "name": "s"}])
    with pytest.raises(GuardrailBlocked) as info:
        await _run(_call(), blocking, Upstream(content="the secret is out"))
    assert info.value.direction == "output" and info.value.http_status == 422


def _chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    return orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _sent(frames: bytes) -> str:
    """The content the client reads from SSE frames."""
    text = ""
    for line in frames.decode().split("\n\n"):
        if line.startswith("data: {"):
            for choice in orjson.loads(line[6:]).get("choices") or ():
                text += choice["delta"].get("content") or ""
    return text


async def test_a_stream_is_redacted_across_chunk_boundaries() -> None:
    endpoint = _endpoint(guardrails=[{"type": "pii", "action": "redact", "applies_to": "output"}])
    shaper = OutputStream(endpoint, None)
    pieces = ["Mail ", "alice.sm", "ith@mail.ex", "ample.org", " now"]
    frames = [await shaper.frame(_chunk(p)) for p in pieces]
    assert "alice" not in b"".join(frames).decode()
    frames.append(await shaper.frame(_chunk(finish="stop")))
    frames.append(await shaper.frame(orjson.dumps({"id": "c1", "choices": [], "usage": {}})))
    frames.append(await shaper.finish())
    assert _sent(b"".join(frames)) == "Mail [REDACTED_EMAIL] now"
    assert frames[-1] == b"data: [DONE]\n\n"
    # A chunk nothing touched goes out as the router's bytes; a last word is held back.
    plain = OutputStream(endpoint, None)
    assert await plain.frame(_chunk("Hello ")) == b"data: " + _chunk("Hello ") + b"\n\n"
    assert _sent(await plain.frame(_chunk("there"))) == ""


async def test_a_stream_without_a_finishing_chunk_still_sends_its_held_tail() -> None:
    endpoint = _endpoint(guardrails=[{"type": "pii", "action": "redact", "applies_to": "output"}])
    shaper = OutputStream(endpoint, None)
    first = await shaper.frame(_chunk("write to bob"))
    assert _sent(first + await shaper.finish()) == "write to bob"


async def test_the_output_schema_on_a_stream_fails_at_its_end() -> None:
    endpoint = _endpoint(output_schema={"type": "object", "required": ["a"]})
    good = OutputStream(endpoint, None)
    for piece in ('{"a"', ": 1}"):
        await good.frame(_chunk(piece))
    await good.frame(_chunk(finish="stop"))
    assert await good.finish() == b"data: [DONE]\n\n"
    bad = OutputStream(endpoint, None)
    await bad.frame(_chunk('{"b": 1}'))
    with pytest.raises(OutputSchemaInvalid) as info:
        await bad.frame(_chunk(finish="stop"))
    assert info.value.path == "$" and "'a' is a required property" in info.value.reason
    unfinished = OutputStream(endpoint, None)
    await unfinished.frame(_chunk("nope"))
    with pytest.raises(OutputSchemaInvalid):
        await unfinished.finish()


async def test_a_stream_gets_a_shaper_only_when_there_is_something_to_check() -> None:
    upstream = Upstream()
    streaming = {"streaming_enabled": True}
    await _run(_call(stream=True), _endpoint(**streaming), upstream)
    guarded = _endpoint(guardrails=[{"type": "max_length", "max_chars": 5}], **streaming)
    outcome = await _run(_call("hi", stream=True), guarded, upstream)
    assert outcome.answer == "stream"
    assert upstream.shapers[0] is None and isinstance(upstream.shapers[1], OutputStream)
    assert upstream.calls[1][1]["stream"] is True
    # No streaming on the endpoint: a unary call, whatever the caller asked.
    outcome = await _run(_call(stream=True), _endpoint(), upstream)
    assert isinstance(outcome.answer, Completion)


def test_the_gateway_api_names_each_attempts_model_and_the_guardrail() -> None:
    from edge.api.routes.gateway_api import GatewayApiRoute

    failed = ModelsFailed(
        [("mock-chat", _all_failed("a")), ("fb-1", ProviderUnavailable("fb-1 down"))]
    )
    resp = GatewayApiRoute.error_response(failed)
    body = orjson.loads(bytes(resp.body))
    assert resp.status_code == 502 and body["code"] == "all_providers_failed"
    assert [(a["model"], a.get("provider")) for a in body["attempts"]] == [
        ("mock-chat", "a"),
        ("fb-1", None),
    ]
    assert body["attempts"][1]["code"] == "provider_unavailable"
    assert (
        body["error"]
        == "Every model failed: mock-chat: All providers failed: a/d: a down; fb-1: fb-1 down"
    )
    blocked = GuardrailBlocked(
        "blocked", guardrail="words", guardrail_type="blocked_terms", direction="input"
    )
    body = orjson.loads(bytes(GatewayApiRoute.error_response(blocked).body))
    assert body == {
        "ok": False,
        "error": "blocked",
        "code": "guardrail_blocked",
        "guardrail": {
            "name": "words",
            "type": "blocked_terms",
            "direction": "input",
            "reason": "matched",
            "index": None,
        },
    }
    # Every deployment rate limited is still seed 001's provider failure.
    limited = _all_failed("a")
    limited.http_status = 429
    assert GatewayApiRoute.error_response(limited).status_code == 502


async def test_a_checked_stream_records_what_the_client_got_before_done() -> None:
    stored: list[str] = []

    async def record(reply: str) -> None:
        stored.append(reply)

    endpoint = _endpoint(guardrails=[{"type": "pii", "action": "redact", "applies_to": "output"}])
    shaper = OutputStream(endpoint, None, record=record)
    for piece in ("mail ", EMAIL, " ok"):
        await shaper.frame(_chunk(piece))
    await shaper.frame(_chunk(finish="stop"))
    assert stored == []
    assert await shaper.finish() == b"data: [DONE]\n\n"
    assert stored == ["mail [REDACTED_EMAIL] ok"]
