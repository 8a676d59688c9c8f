"""Unit tests of the Anthropic adapter's translation (the conformance suite covers I/O)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import orjson
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import InvalidRequest, ProviderRejected, ProviderUnavailable
from router.providers import anthropic
from router.providers.anthropic import StreamTranslator, _map_error, from_provider, to_provider
from router.providers.base import ProviderRequest, Usage
from router.providers.sse import ServerSentEvent


def _req(body: dict[str, Any], **kw: Any) -> ProviderRequest:
    return ProviderRequest("chat.completions", body, provider_model="claude", **kw)


def _sent(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return orjson.loads(to_provider(_req(body, **kw), stream=False))


def _user(text: str = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_system_and_developer_are_hoisted_and_turns_merged() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            _user("Weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":"Paris"}'},
                    },
                    {"id": "t2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "21C"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "25C"}]},
            _user("Thanks"),
            {"role": "assistant", "content": ""},
        ]
    }
    original = copy.deepcopy(body)
    sent = _sent(body)
    assert body == original
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use metric units."},
    ]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "t1", "name": "w", "input": {"c": "Paris"}},
                {"type": "tool_use", "id": "t2", "name": "w", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "21C"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "25C"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_images_by_data_url_and_by_reference() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    [turn] = _sent({"messages": [{"role": "user", "content": parts}]})["messages"]
    assert turn["content"] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


@pytest.mark.parametrize(
    ("fields", "catalog_cap", "expected"),
    [
        ({"max_completion_tokens": 50, "max_tokens": 70}, 900, 50),
        ({"max_tokens": 70}, 900, 70),
        ({}, 900, 900),
        ({}, 0, anthropic.DEFAULT_MAX_TOKENS),
    ],
)
def test_max_tokens_is_always_set(fields: dict[str, Any], catalog_cap: int, expected: int) -> None:
    sent = _sent({"messages": [_user()], **fields}, max_output_tokens=catalog_cap)
    assert sent["max_tokens"] == expected


def test_sampling_fields_stop_and_user() -> None:
    body = {
        "messages": [_user()],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": "END",
        "user": "u-42",
        "seed": 7,
        "presence_penalty": 0.1,
        "metadata": {"k": "v"},
    }
    sent = _sent(body)
    assert {k: sent[k] for k in ("temperature", "top_p", "stop_sequences", "metadata")} == {
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
    }
    assert "seed" not in sent and "presence_penalty" not in sent


_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "lookup"}}},
            {"type": "tool", "name": "lookup"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tools_and_tool_choice(fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    sent = _sent({"messages": [_user()], "tools": [_TOOL], **fields})
    assert sent["tools"] == [{"name": "lookup", "input_schema": {"type": "object"}}]
    assert sent.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}},
                }
            },
            "response_format",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"temperature": "hot"}, "temperature"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_what_cannot_be_expressed_is_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_provider(_req({"messages": [_user()], **fields}), stream=False)
    assert caught.value.param == param


def test_tool_call_arguments_must_be_a_json_object() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "[1]"}}
    body = {"messages": [_user(), {"role": "assistant", "tool_calls": [call]}]}
    with pytest.raises(InvalidRequest, match="t1"):
        to_provider(_req(body), stream=False)


def test_other_operations_are_refused() -> None:
    req = ProviderRequest("embeddings", {"input": "x"}, provider_model="claude")
    with pytest.raises(InvalidRequest, match="chat completions only"):
        to_provider(req, stream=False)


# -- answers -------------------------------------------------------------------


def _message(content: list[dict[str, Any]], stop_reason: str, **usage: int | None) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": content,
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 5, "output_tokens": 2, **usage},
        }
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    result = from_provider(_message([{"type": "text", "text": "x"}], stop_reason), "a", created=1)
    assert orjson.loads(result.body)["choices"][0]["finish_reason"] == finish


def test_text_and_tool_use_in_one_answer_and_thinking_skipped() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me "},
        {"type": "text", "text": "check."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
    ]
    result = from_provider(_message(content, "tool_use"), "a", created=1700000000)
    body = orjson.loads(result.body)
    assert body["id"] == "msg_1" and body["model"] == "claude-x" and body["created"] == 1700000000
    message = body["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q":"x"}'},
        }
    ]
    assert result.usage == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)


def test_null_cache_counts_are_zero() -> None:
    raw = _message([], "end_turn", cache_read_input_tokens=None)
    result = from_provider(raw, "a", created=1)
    assert result.usage == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert orjson.loads(result.body)["choices"][0]["message"]["content"] == ""


def test_a_body_that_is_not_a_message_is_a_provider_failure() -> None:
    with pytest.raises(ProviderUnavailable):
        from_provider(b'{"type": "completion"}', "a", created=1)


# -- stream events -----------------------------------------------------------------


def _event(kind: str, **fields: Any) -> ServerSentEvent:
    return ServerSentEvent(kind, orjson.dumps({"type": kind, **fields}))


_START = _event(
    "message_start",
    message={
        "id": "msg_s",
        "model": "claude-x",
        "content": [],
        "usage": {"input_tokens": 7, "output_tokens": 1},
    },
)


def test_stream_forwards_thinking_as_reasoning_content_and_merges_cumulative_usage() -> None:
    translator = StreamTranslator("a", forward_usage=True, created=5)
    events = [
        _START,
        _event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        _event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}),
        _event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s"}),
        _event("content_block_stop", index=0),
        _event("content_block_start", index=1, content_block={"type": "text", "text": "Hi"}),
        _event(
            "message_delta",
            delta={"stop_reason": "max_tokens"},
            usage={"output_tokens": 9, "cache_read_input_tokens": 3},
        ),
        _event("message_stop"),
    ]
    chunks = [chunk for e in events if (chunk := translator.feed(e)) is not None]
    assert translator.done
    deltas = [orjson.loads(c.data)["choices"] for c in chunks if c.data is not None]
    assert [d[0]["delta"] if d else None for d in deltas] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hm"},
        {"reasoning_signature": "s"},
        {"content": "Hi"},
        {},
        None,
    ]
    assert deltas[4][0]["finish_reason"] == "length"
    assert chunks[-1].usage == Usage(
        prompt_tokens=10, completion_tokens=9, total_tokens=19, cached_tokens=3
    )
    assert orjson.loads(chunks[0].data or b"")["created"] == 5


@pytest.mark.parametrize(
    "event",
    [
        _event("content_block_delta", index=0, delta={"type": "text_delta", "text": "x"}),
        ServerSentEvent("message_start", b"not json"),
    ],
)
def test_stream_refuses_events_out_of_protocol(event: ServerSentEvent) -> None:
    with pytest.raises(ProviderUnavailable, match="mid-stream"):
        StreamTranslator("a", forward_usage=False, created=0).feed(event)


def test_stream_error_before_any_content_is_retryable() -> None:
    error = _event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(ProviderUnavailable, match="Overloaded") as caught:
        StreamTranslator("a", forward_usage=False, created=0).feed(error)
    assert caught.value.retryable
    # Anthropic's overloaded_error is the provider shedding load: 503 provider_overloaded.
    assert (caught.value.http_status, caught.value.code) == (503, "provider_overloaded")
    other = _event("error", error={"type": "api_error", "message": "Internal"})
    with pytest.raises(ProviderUnavailable) as caught:
        StreamTranslator("a", forward_usage=False, created=0).feed(other)
    assert (caught.value.http_status, caught.value.code) == (502, "provider_unavailable")


def _adapter(handler: Any, **entry: Any) -> anthropic.AnthropicAdapter:
    config = ProviderEntry(kind="anthropic", base_url="https://a.test/v1", **entry)
    return anthropic.build("a", config, "sk-ant", transport=httpx.MockTransport(handler))


@pytest.mark.timeout(5)
async def test_a_stream_cut_before_message_stop_fails() -> None:
    cut = b"".join(
        b"event: " + e.event.encode() + b"\ndata: " + e.data + b"\n\n"
        for e in (
            _START,
            _event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        )
    )
    adapter = _adapter(lambda request: httpx.Response(200, content=cut))
    chunks = []
    try:
        with pytest.raises(ProviderUnavailable, match="before message_stop"):
            async for chunk in adapter.stream(_req({"messages": [_user()]}), deadline=None):
                chunks.append(chunk)
    finally:
        await adapter.aclose()
    assert len(chunks) == 1


@pytest.mark.timeout(5)
async def test_version_header_can_be_pinned_by_the_catalog() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=_message([], "end_turn"))

    adapter = _adapter(handler)
    pinned = _adapter(handler, headers={"anthropic-version": "2099-01-01"})
    try:
        await adapter.complete(_req({"messages": [_user()]}), deadline=None)
        await pinned.complete(_req({"messages": [_user()]}), deadline=None)
    finally:
        await adapter.aclose()
        await pinned.aclose()
    assert [r.headers["anthropic-version"] for r in seen] == ["2023-06-01", "2099-01-01"]
    assert seen[0].headers["x-api-key"] == "sk-ant" and "authorization" not in seen[0].headers


@pytest.mark.timeout(5)
async def test_a_clients_version_is_sent_on_only_when_supported_and_not_pinned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=_message([], "end_turn"))

    monkeypatch.setattr(anthropic, "SUPPORTED_VERSIONS", frozenset({"2023-06-01", "2024-01-01"}))
    adapter = _adapter(handler)
    pinned = _adapter(handler, headers={"Anthropic-Version": "2099-01-01"})
    asks = [None, "2024-01-01", "1999-01-01"]
    try:
        for version in asks:
            body: dict[str, Any] = {"messages": [_user()], "anthropic_version": version}
            await adapter.complete(_req(body), deadline=None)
        await pinned.complete(
            _req({"messages": [_user()], "anthropic_version": "2024-01-01"}), deadline=None
        )
    finally:
        await adapter.aclose()
        await pinned.aclose()
    versions = [r.headers["anthropic-version"] for r in seen]
    # None and an unsupported one get the router's; a supported one is sent on; a pin wins.
    assert versions == ["2023-06-01", "2024-01-01", "2023-06-01", "2099-01-01"]
    assert all("anthropic_version" not in orjson.loads(r.content) for r in seen)


@pytest.mark.parametrize(
    ("status", "error", "http_status"),
    [
        (529, ProviderUnavailable, 503),
        (503, ProviderUnavailable, 502),
        (401, ProviderRejected, 502),
        (403, ProviderRejected, 502),
        (404, ProviderRejected, 404),
        (413, ProviderRejected, 413),
    ],
)
def test_map_error_statuses(status: int, error: type, http_status: int) -> None:
    body = b'{"type":"error","error":{"type":"x","message":"invalid x-api-key sk-ant-123"}}'
    err = _map_error(httpx.Response(status, content=body), "a")
    assert type(err) is error and err.http_status == http_status
    if status == 529:
        assert err.code == "provider_overloaded" and err.retryable
    if status in (401, 403):
        assert "sk-" not in err.message


def test_map_error_without_a_json_body() -> None:
    err = _map_error(httpx.Response(400, content=b"<html>"), "a")
    assert err.message == "Provider `a` answered 400"
