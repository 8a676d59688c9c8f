"""Endpoint JSON Schema checks (``edge.pipeline.schemas``): refusals at save time naming the
place, and the validator's detail when ``variables`` or the model's content fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edge.pipeline.schemas import MAX_DEPTH, PATTERN_TIMEOUT_S, CompiledSchema, compile_schema
from gateway_common.errors import InputSchemaInvalid, InvalidRequest, OutputSchemaInvalid

pytestmark = pytest.mark.timeout(60)

ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["customer"],
    "additionalProperties": False,
    "$defs": {"qty": {"type": "integer", "minimum": 1}},
    "properties": {
        "customer": {"type": "string", "pattern": "^[A-Z]"},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"$ref": "#/$defs/qty"},
                    "gift wrap": {"type": "boolean"},
                },
            },
        },
    },
}


def input_error(schema: CompiledSchema, instance: object) -> InputSchemaInvalid:
    with pytest.raises(InputSchemaInvalid) as info:
        schema.validate(instance)
    return info.value


def output_error(schema: CompiledSchema, content: str) -> OutputSchemaInvalid:
    with pytest.raises(OutputSchemaInvalid) as info:
        schema.validate_content(content)
    return info.value


# --- save time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ("not a schema", "input_schema"),
        (["type", "object"], "input_schema"),
        ({"type": "strin"}, "input_schema.type"),
        ({"properties": {"a": {"minimum": "1"}}}, "input_schema.properties.a.minimum"),
        ({"required": "name"}, "input_schema.required"),
        ({"$schema": "https://example.com/my-draft"}, "input_schema.$schema"),
        ({"$ref": "#/$defs/missing"}, "input_schema.$ref"),
        ({"properties": {"a": {"$ref": "other.json"}}}, "input_schema.properties.a.$ref"),
        ({"pattern": "(unclosed"}, "input_schema.pattern"),
        ({"properties": {"a": {"pattern": "(a+)+$"}}}, "input_schema.properties.a.pattern"),
        ({"patternProperties": {"(x+x+)+y": {}}}, 'input_schema.patternProperties["(x+x+)+y"]'),
    ],
)
def test_an_invalid_schema_is_refused_naming_the_place(schema: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        compile_schema(schema, "input_schema")
    err = info.value
    assert (err.http_status, err.code, err.param) == (400, "invalid_schema", param)
    assert err.message.startswith(f"{param}: ")


def test_the_field_is_named_for_the_output_schema_too() -> None:
    with pytest.raises(InvalidRequest) as info:
        compile_schema({"type": 3}, "output_schema")
    assert info.value.param == "output_schema.type"


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_reference_is_refused_and_never_fetched(
    schema_server: tuple[str, list[str]],
) -> None:
    url, hits = schema_server
    with pytest.raises(InvalidRequest, match="fetches no remote schemas"):
        compile_schema({"properties": {"a": {"$ref": f"{url}/s.json"}}}, "output_schema")
    assert hits == []


def test_local_references_ids_and_other_drafts_are_accepted() -> None:
    compile_schema(ORDER, "input_schema")
    compile_schema(
        {
            "$id": "https://example.com/root",
            "$defs": {"a": {"$id": "a", "type": "string"}},
            "$ref": "a",
        },
        "input_schema",
    )
    draft7 = compile_schema(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"s": {"type": "string"}},
            "properties": {"x": {"$ref": "#/definitions/s"}},
        },
        "output_schema",
    )
    assert output_error(draft7, '{"x": 1}').path == "$.x"
    # A "$ref" inside data (enum, const, default, examples) is not a reference.
    compile_schema({"enum": [{"$ref": "https://example.com/x"}]}, "input_schema")


# --- input -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def order() -> CompiledSchema:
    return compile_schema(ORDER, "input_schema")


@pytest.mark.parametrize(
    ("instance", "path", "reason"),
    [
        ({}, "$", "'customer' is a required property"),
        ({"customer": "ada"}, "$.customer", "'ada' does not match '^[A-Z]'"),
        ({"customer": "Ada", "email": "nope"}, "$.email", "'nope' is not a 'email'"),
        ({"customer": "Ada", "when": "yesterday"}, "$.when", "'yesterday' is not a 'date-time'"),
        ({"customer": "Ada", "items": [{"sku": 1}]}, "$.items[0].sku", "1 is not of type 'string'"),
        (
            {"customer": "Ada", "items": [{"sku": "a", "qty": 0}]},
            "$.items[0].qty",
            "0 is less than the minimum of 1",
        ),
        (
            {"customer": "Ada", "items": [{"sku": "a"}, {"sku": "b", "gift wrap": "yes"}]},
            '$.items[1]["gift wrap"]',
            "'yes' is not of type 'boolean'",
        ),
        (
            {"customer": "Ada", "coupon": "X"},
            "$",
            "Additional properties are not allowed ('coupon' was unexpected)",
        ),
        ([1], "$", "[1] is not of type 'object'"),
    ],
)
def test_input_failures_carry_the_validator_detail(
    order: CompiledSchema, instance: object, path: str, reason: str
) -> None:
    err = input_error(order, instance)
    assert (err.http_status, err.code) == (422, "input_schema_invalid")
    assert (err.path, err.reason) == (path, reason)
    assert err.param == "variables" + path[1:]
    assert err.message == f"input_schema: {path}: {reason}"


def test_valid_input_passes(order: CompiledSchema) -> None:
    order.validate(
        {
            "customer": "Ada",
            "email": "ada@example.com",
            "when": "2024-01-15T10:30:00Z",
            "items": [{"sku": "a", "qty": 2, "gift wrap": True}],
        }
    )


def test_a_long_reason_is_cut_to_a_bound(order: CompiledSchema) -> None:
    err = input_error(order, {"customer": "a" * 10_000})
    assert len(err.reason) <= 300 and err.reason.endswith("…")


def test_a_pattern_is_time_bounded_per_validation() -> None:
    schema = compile_schema(
        {"type": "array", "items": {"type": "string", "pattern": "(b+)+$"}}, "input_schema"
    )
    started = time.monotonic()
    err = input_error(schema, ["b" * 5000 + "c"] * 20)
    # The 20 items share one deadline: a bound per item would take at least 20 timeouts
    # (a loaded machine stretches the shared one, so that is the only line drawn).
    assert time.monotonic() - started < PATTERN_TIMEOUT_S * 20
    assert "took too long" in err.reason
    props = compile_schema({"patternProperties": {"(b+)+$": {"type": "integer"}}}, "input_schema")
    assert "took too long" in input_error(props, {"b" * 5000 + "c": 1}).reason
    assert props.validate({"bb": 1}) is None
    assert "not of type 'integer'" in input_error(props, {"bb": "x"}).reason


def test_boolean_schemas() -> None:
    compile_schema(True, "input_schema").validate({"anything": 1})
    assert input_error(compile_schema(False, "input_schema"), {}).path == "$"


# --- output ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answer() -> CompiledSchema:
    return compile_schema(
        {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}},
        "output_schema",
    )


def test_valid_output_returns_the_parsed_content(answer: CompiledSchema) -> None:
    assert answer.validate_content(' {"answer": 42}\n') == {"answer": 42}


@pytest.mark.parametrize(
    ("content", "path", "reason"),
    [
        ("The answer is 42.", "$", "the content is not JSON"),
        ('```json\n{"answer": 42}\n```', "$", "the content is not JSON"),
        ("", "$", "the content is not JSON"),
        ('{"answer": "42"}', "$.answer", "'42' is not of type 'integer'"),
        ("[]", "$", "[] is not of type 'object'"),
    ],
)
def test_output_failures_are_502_with_the_detail(
    answer: CompiledSchema, content: str, path: str, reason: str
) -> None:
    err = output_error(answer, content)
    assert (err.http_status, err.code, err.retryable) == (502, "output_schema_invalid", False)
    assert err.path == path and err.reason.startswith(reason)
    assert err.param is None and err.message.startswith(f"output_schema: {path}: ")


def test_deeply_nested_content_fails_cleanly() -> None:
    nested = compile_schema({"type": ["array", "integer"], "items": {"$ref": "#"}}, "output_schema")
    err = output_error(nested, "[" * 1000 + "1" + "]" * 1000)
    assert f"nested more than {MAX_DEPTH} levels" in err.reason
    assert nested.validate_content("[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH) is not None
    deep_object = "{}"
    for _ in range(MAX_DEPTH):
        deep_object = '{"a": ' + deep_object + "}"
    assert "nested more" in output_error(compile_schema(True, "output_schema"), deep_object).reason
    assert "not JSON" in output_error(nested, "[" * 5000 + "]" * 5000).reason
