"""``edge.anthropic``: the Messages translation both ways and Anthropic's error mapping (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from edge.anthropic import (
    MessagesRequest,
    MessageStream,
    error_response,
    message_body,
    status_and_type,
    to_chat,
)
from gateway_common.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    CreditsExhausted,
    GatewayError,
    GuardrailBlocked,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)


def _request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate_json(orjson.dumps({**body, **fields}))


# -- inbound ---------------------------------------------------------------------------


def test_the_clients_anthropic_version_rides_only_to_anthropic_kinds_and_only_as_a_date() -> None:
    req = _request()
    assert to_chat(req, native=True, version=" 2023-06-01 ")["anthropic_version"] == "2023-06-01"
    assert "anthropic_version" not in to_chat(req, native=False, version="2023-06-01")
    assert "anthropic_version" not in to_chat(req, native=True, version="latest\r\nx: y")
    assert "anthropic_version" not in to_chat(req, native=True)


def test_cache_control_top_k_and_thinking_ride_only_to_anthropic_kinds() -> None:
    req = _request(
        system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        top_k=4,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
    )
    native = to_chat(req, native=True)
    plain = to_chat(req, native=False)
    assert native["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
    }
    assert native["top_k"] == 4 and native["thinking"]["budget_tokens"] == 2048
    assert native["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert plain["messages"][0] == {"role": "system", "content": "S"}
    assert "top_k" not in plain and "thinking" not in plain
    assert "cache_control" not in plain["tools"][0]


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "enabled"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_thinking_maps_to_reasoning_effort_for_reasoning_models(
    thinking: dict[str, Any], effort: str | None
) -> None:
    req = _request(thinking=thinking)
    body = to_chat(req, native=False, reasoning=True)
    assert body.get("reasoning_effort") == effort and "thinking" not in body
    assert "reasoning_effort" not in to_chat(req, native=False), "no reasoning capability"
    assert "reasoning_effort" not in to_chat(req, native=True, reasoning=True), "kept as is"


def test_tool_results_come_first_and_their_images_follow() -> None:
    req = _request(
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
                    {"type": "tool_use", "id": "b", "name": "f", "input": {"x": 2}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "here"},
                    {"type": "tool_result", "tool_use_id": "a", "content": "one"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "b",
                        "content": [
                            {"type": "text", "text": "two"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "Z",
                                },
                            },
                        ],
                    },
                ],
            },
        ]
    )
    messages = to_chat(req, native=False)["messages"]
    assert messages[1]["content"] == "let me look"
    assert [c["function"]["arguments"] for c in messages[1]["tool_calls"]] == [
        '{"x":1}',
        '{"x":2}',
    ]
    assert messages[2:4] == [
        {"role": "tool", "tool_call_id": "a", "content": "one"},
        {"role": "tool", "tool_call_id": "b", "content": "two"},
    ]
    assert messages[4]["role"] == "user"
    assert messages[4]["content"][0]["image_url"]["url"] == "data:image/png;base64,Z"
    assert messages[4]["content"][1] == {"type": "text", "text": "here"}


def test_tool_choice_and_stream_translate() -> None:
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    chat = to_chat(
        _request(
            tools=tools,
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            stream=True,
            stop_sequences=["x"],
            metadata={"user_id": "u"},
        ),
        native=False,
    )
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["stream_options"] == {"include_usage": True}
    assert (chat["stop"], chat["user"], chat["max_completion_tokens"]) == (["x"], "u", 10)
    named = to_chat(_request(tools=tools, tool_choice={"type": "tool", "name": "t"}), native=False)
    assert named["tool_choice"] == {"type": "function", "function": {"name": "t"}}


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"tools": [{"name": "t"}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "url", "url": "u"}}],
                }
            ]
        },
    ],
    ids=["server-tool", "no-input-schema", "document-url"],
)
def test_what_cannot_be_translated_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        to_chat(_request(**fields), native=False)


# -- outbound --------------------------------------------------------------------------


def _completion(message: dict[str, Any], finish: str, **usage: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-abc",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, **usage},
        }
    )


def test_a_completion_becomes_a_message() -> None:
    raw = _completion(
        {
            "content": "ok",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
        },
        "tool_calls",
        prompt_tokens_details={"cached_tokens": 4, "cache_write_tokens": 6},
    )
    message = orjson.loads(message_body(raw, model="claude"))
    assert message["id"] == "msg_abc" and message["model"] == "claude"
    assert message["content"] == [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "c", "name": "f", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 6,
        "cache_read_input_tokens": 4,
    }
    length = orjson.loads(message_body(_completion({"content": "x"}, "length"), model="m"))
    assert length["stop_reason"] == "max_tokens"


def test_tool_arguments_that_are_not_an_object_are_a_provider_error() -> None:
    raw = _completion({"tool_calls": [{"id": "c", "function": {"arguments": "[1]"}}]}, "tool_calls")
    with pytest.raises(ProviderError):
        message_body(raw, model="m")


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return orjson.dumps({"id": "chatcmpl-s", "choices": choices, **extra})


def _events(frames: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[6:]) for line in frames.decode().splitlines() if line.startswith("data: ")
    ]


async def test_chunks_become_anthropics_events_with_blocks_in_order() -> None:
    stream = MessageStream(model="m", input_tokens=7)
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "hmm"}),
        _chunk({"content": "Hi"}),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}),
        _chunk({}, "tool_calls"),
        _chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 3}),
    ]
    frames = b"".join([await stream.frame(c) for c in chunks]) + await stream.finish()
    events = _events(frames)
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_stop", 3),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 7
    assert events[3]["delta"] == {"type": "thinking_delta", "thinking": "hmm"}
    assert events[9]["delta"] == {"type": "input_json_delta", "partial_json": '{"x"'}
    assert events[12]["content_block"] == {"type": "tool_use", "id": "b", "name": "g", "input": {}}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["input_tokens"] == 9 and events[-2]["usage"]["output_tokens"] == 3


async def test_a_stream_failure_is_an_error_event() -> None:
    frame = MessageStream.error_frame(ProviderUnavailable("gone"))
    assert frame.startswith(b"event: error\ndata: ")
    assert _events(frame)[0]["error"] == {"type": "api_error", "message": "gone"}


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "status", "kind"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error"),
        (GuardrailBlocked("x", guardrail="g", guardrail_type="t", direction="input"), 400,
         "invalid_request_error"),
        (Unauthenticated("x"), 401, "authentication_error"),
        (PermissionDenied("x"), 403, "permission_error"),
        (ModelNotFound("x"), 404, "not_found_error"),
        (PayloadTooLarge("x"), 413, "request_too_large"),
        (RateLimited("x"), 429, "rate_limit_error"),
        (BudgetExceeded("x"), 400, "invalid_request_error"),
        (CreditsExhausted("x"), 402, "billing_error"),
        (AllProvidersFailed({"a/b": RateLimited("x")}), 429, "rate_limit_error"),
        (ServiceUnavailable("x"), 529, "overloaded_error"),
        (ProviderTimeout("x"), 504, "timeout_error"),
        (ProviderUnavailable("x"), 500, "api_error"),
        (GatewayError("x"), 500, "api_error"),
    ],
)  # fmt: skip
def test_errors_map_to_anthropics_statuses(err: GatewayError, status: int, kind: str) -> None:
    assert status_and_type(err) == (status, kind)
    response = error_response(err)
    assert response.status_code == status
    body = orjson.loads(bytes(response.body))
    assert body["type"] == "error" and body["error"] == {"type": kind, "message": err.message}


def test_a_rate_limit_says_when_to_retry_and_overload_says_retry() -> None:
    assert error_response(RateLimited("x", retry_after=3)).headers["retry-after"] == "3"
    assert error_response(ServiceUnavailable("x")).headers["x-should-retry"] == "true"


async def test_generation_context_rides_on_the_message_and_the_message_delta() -> None:
    context = {"line_items": [{"sku": "mock-chat.input", "amount": "0.1"}]}
    completion = orjson.loads(_completion({"role": "assistant", "content": "hi"}, "stop"))
    completion["generation_context"] = context
    assert orjson.loads(message_body(orjson.dumps(completion), model="m"))[
        "generation_context"
    ] == (context)
    assert "generation_context" not in orjson.loads(
        message_body(_completion({"role": "assistant", "content": "hi"}, "stop"), model="m")
    )
    shaper = MessageStream(model="m", input_tokens=1)
    frames = await shaper.frame(_chunk({"content": "hi"}))
    frames += await shaper.frame(_chunk(finish="stop", generation_context=context))
    frames += await shaper.finish()
    (delta,) = [e for e in _events(frames) if e["type"] == "message_delta"]
    assert delta["generation_context"] == context
