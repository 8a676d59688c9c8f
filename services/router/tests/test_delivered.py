"""``router.delivered``: the estimated usage of a stream cut before its usage chunk."""

from __future__ import annotations

import tracemalloc

import orjson

from gateway_common.tokens import chat_prompt_tokens, estimate
from router.delivered import Delivered, delivered_usage

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


def test_responses_events_count_their_delta_text() -> None:
    body = {"model": "m", "input": "hello there"}
    events = [
        orjson.dumps({"type": "response.created", "sequence_number": 0, "response": {}}),
        orjson.dumps({"type": "response.output_text.delta", "sequence_number": 1, "delta": "abc"}),
        orjson.dumps({"type": "response.function_call_arguments.delta", "delta": '{"a":1}'}),
    ]
    usage = delivered_usage("responses", body, events)
    assert usage.completion_tokens == estimate("abc") + estimate('{"a":1}')
    assert usage.prompt_tokens > 0


def test_delivered_counts_what_was_added_across_calls() -> None:
    delivered = Delivered()
    delivered.add([_chunk(content="abcdefg"), _chunk(content="hi")])
    delivered.add([_chunk(content="x")])
    assert delivered.usage("chat.completions", BODY).completion_tokens == 2 + 1 + 1


def test_delivered_holds_a_count_not_the_chunks() -> None:
    """An open stream's accounting does not grow with the chunks it sent (issue 20 point 2)."""
    chunks = [_chunk(content=f"token {i} " * 4) for i in range(2000)]
    delivered = Delivered()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for chunk in chunks:
            delivered.add((chunk,))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024  # the chunks are about 200 KiB; keeping them would show
    assert delivered.completion_tokens == sum(estimate(f"token {i} " * 4) for i in range(2000))
