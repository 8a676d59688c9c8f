"""``router.delivered``: the estimated usage of a stream cut before its usage chunk."""

from __future__ import annotations

import orjson

from gateway_common.tokens import chat_prompt_tokens, estimate
from router.delivered import delivered_usage

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there, how are you"}]}


def _chunk(**delta: object) -> bytes:
    return orjson.dumps(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    )


def test_a_cut_stream_is_billed_for_its_prompt_and_the_text_that_went_out() -> None:
    chunks = [_chunk(role="assistant", content=""), _chunk(content="abcdefg"), _chunk(content="hi")]
    usage = delivered_usage("chat.completions", BODY, chunks)
    assert usage.prompt_tokens == chat_prompt_tokens(BODY, estimate) > 0
    assert usage.completion_tokens == 2 + 1  # ceil(7/6) + ceil(2/6)
    assert usage.total_tokens == usage.prompt_tokens + 3


def test_tool_call_arguments_count_and_junk_counts_nothing() -> None:
    call = {"index": 0, "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    chunks = [_chunk(tool_calls=[call]), b"not json", orjson.dumps({"choices": "?"})]
    usage = delivered_usage("chat.completions", BODY, chunks)
    assert usage.completion_tokens == estimate("lookup") + estimate('{"q": "x"}')


def test_nothing_delivered_still_bills_the_prompt() -> None:
    usage = delivered_usage("chat.completions", BODY, [])
    assert usage.completion_tokens == 0 and usage.prompt_tokens > 0
