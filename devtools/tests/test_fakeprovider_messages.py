"""The fake provider's Anthropic Messages mode: deterministic answers, caching, events."""

from __future__ import annotations

from typing import Any

import orjson

from fakeprovider import messages
from fakeprovider.replies import digest


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-fake",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hello there"}],
        **fields,
    }


def test_text_answer_is_a_function_of_the_body() -> None:
    body = _body()
    answer = messages.message(body, messages.PromptCache())
    assert answer["content"] == [{"type": "text", "text": f"hello there [{digest(body)}]"}]
    assert answer["stop_reason"] == "end_turn"
    assert answer["usage"]["input_tokens"] == 2


def test_a_cached_prefix_is_written_once_then_read() -> None:
    cache = messages.PromptCache()
    system = [
        {"type": "text", "text": "four words of system", "cache_control": {"type": "ephemeral"}}
    ]
    first = messages.message(_body(system=system), cache)["usage"]
    second = messages.message(_body(system=system), cache)["usage"]
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (4, 0)
    assert (second["cache_creation_input_tokens"], second["cache_read_input_tokens"]) == (0, 4)
    assert first["input_tokens"] == second["input_tokens"] == 2


def test_stop_sequences_and_tools() -> None:
    cache = messages.PromptCache()
    stopped = messages.message(_body(stop_sequences=["["]), cache)
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == "["
    tools = [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]
    called = messages.message(_body(tools=tools, tool_choice={"type": "any"}), cache)
    assert [b["name"] for b in called["content"]] == ["a", "b"]
    assert called["stop_reason"] == "tool_use"


def test_stream_events_and_the_error_marker() -> None:
    frames = messages.message_events(_body(), messages.PromptCache())
    kinds = [orjson.loads(f.split(b"data: ", 1)[1])["type"] for f in frames]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    failing = _body(messages=[{"role": "user", "content": "x [stream-error]"}])
    kinds = [
        orjson.loads(f.split(b"data: ", 1)[1])["type"]
        for f in messages.message_events(failing, messages.PromptCache())
    ]
    assert kinds[-1] == "error" and "message_stop" not in kinds
