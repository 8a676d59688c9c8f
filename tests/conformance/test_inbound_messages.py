"""The inbound direction: each provider's recorded stream, through its adapter and the edge's
Messages shaper, is a stream of Anthropic events that the ``anthropic`` SDK accumulates into
the Message the chat chunks describe.

Same fixtures and adapters as ``test_adapters.py`` (``tests/fixtures/<provider>/``): plain
text, a tool call split across deltas, parallel tool calls, usage with cache reads (and
Anthropic's cache writes), a mid-stream error. The chain under test is the one a
``/v1/messages`` stream runs: adapter ``stream`` -> router chunk bytes ->
``edge.anthropic.MessageStream.frame`` / ``done`` / ``error_frame``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from edge.anthropic import MessagesRequest, MessageStream, to_chat
from gateway_common.errors import GatewayError
from router.providers.base import ProviderRequest
from tests.conformance.test_adapters import CASES, Case, Replay, _chat

pytestmark = pytest.mark.timeout(10)

_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(params=[c for c in CASES if c.streaming], ids=lambda case: case.provider)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


async def _run(case: Case, fixture: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(Anthropic events, the chat chunks they came from)`` for one recorded stream."""
    adapter = case.build(httpx.MockTransport(Replay(case.fixture(fixture))))
    shaper = MessageStream(model="claude-ish", input_tokens=1)
    frames: list[bytes] = []
    chunks: list[dict[str, Any]] = []
    request = _chat(stream=True, stream_options={"include_usage": True})
    try:
        async for chunk in adapter.stream(request, deadline=None):
            if chunk.data is not None:
                chunks.append(orjson.loads(chunk.data))
                frames.append(await shaper.frame(chunk.data))
        frames.append(await shaper.finish())
    except GatewayError as err:
        frames.append(shaper.error_frame(err))
    finally:
        await adapter.aclose()
    lines = b"".join(frames).decode().splitlines()
    names = [ln.removeprefix("event: ") for ln in lines if ln.startswith("event: ")]
    events = [orjson.loads(ln[6:]) for ln in lines if ln.startswith("data: ")]
    assert [e["type"] for e in events] == names, "each event is named as its type"
    return events, chunks


def _grammar(events: list[dict[str, Any]]) -> None:
    """Anthropic's order: start, ping, blocks opened and closed one at a time, then the end."""
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    open_index: int | None = None
    next_index = 0
    for event in events[2:]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None and event["index"] == next_index
            open_index, next_index = event["index"], next_index + 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        else:
            assert kind in ("message_delta", "message_stop", "error")
            if kind != "error":  # an error may cut a block short
                assert open_index is None


def _accumulate(events: list[dict[str, Any]]) -> Message:
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] in ("ping", "error"):
            continue
        snapshot = accumulate_event(
            event=_EVENT.validate_python(event), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def _chat_said(chunks: list[dict[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    """The text and ``(name, arguments)`` of each tool call the chat chunks carry."""
    text = ""
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                name, args = calls.setdefault(call["index"], ["", ""])
                function = call.get("function") or {}
                calls[call["index"]] = [
                    name + (function.get("name") or ""),
                    args + (function.get("arguments") or ""),
                ]
    return text, [(name, orjson.loads(args)) for name, args in calls.values()]


@pytest.mark.parametrize(
    ("fixture", "needs"),
    [
        ("stream_plain.sse", ""),
        ("stream_tool_call.sse", "tools"),
        ("stream_text_and_tool_call.sse", "tools"),
        ("stream_parallel_tool_calls.sse", "parallel_tool_calls"),
    ],
)
async def test_the_sdk_assembles_what_the_chat_stream_said(
    case: Case, fixture: str, needs: str
) -> None:
    if needs and not getattr(case, needs):
        pytest.skip(f"adapter has no {needs}")
    events, chunks = await _run(case, fixture)
    _grammar(events)
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    message = _accumulate(events)
    text, calls = _chat_said(chunks)
    assert "".join(b.text for b in message.content if b.type == "text") == text
    uses = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert uses == calls
    if fixture == "stream_parallel_tool_calls.sse":
        assert len(uses) == 2
    assert message.stop_reason == ("tool_use" if calls else "end_turn")


async def test_usage_with_cache_reads_and_writes(case: Case) -> None:
    events, _ = await _run(case, "stream_usage_cached.sse")
    _grammar(events)
    usage = _accumulate(events).usage
    assert usage.cache_read_input_tokens == 4
    assert usage.cache_creation_input_tokens == case.cache_writes
    assert usage.input_tokens == 19 - 4 - case.cache_writes
    assert usage.output_tokens == 10


async def test_a_mid_stream_error_ends_with_an_error_event(case: Case) -> None:
    events, _ = await _run(case, "stream_mid_error.sse")
    _grammar(events)
    assert events[-1]["type"] == "error"
    # Anthropic's recorded stream breaks with its own overloaded_error, which stays one
    # (load shed, retryable); the other families' breaks are upstream failures.
    shed = case.provider == "anthropic"
    assert events[-1]["error"]["type"] == ("overloaded_error" if shed else "api_error")
    assert "message_stop" not in [e["type"] for e in events]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Partial"


#: Where each non-Anthropic family's payload carries the effort a Messages ``thinking`` maps to.
_EFFORT_IN_PAYLOAD: dict[str, Callable[[dict[str, Any]], Any]] = {
    "openai": lambda payload: payload["reasoning_effort"],
    "azure_openai": lambda payload: payload["reasoning_effort"],
    "gemini": lambda payload: payload["generationConfig"]["thinkingConfig"]["thinkingBudget"],
}
#: budget_tokens -> the effort the edge maps it to -> what Gemini is sent for that effort.
_EFFORTS = [(1024, "low", 1024), (4096, "medium", 8192), (16384, "high", 24576)]


@pytest.mark.parametrize(("budget", "effort", "gemini_budget"), _EFFORTS)
async def test_thinking_reaches_a_reasoning_model_as_its_effort(
    case: Case, budget: int, effort: str, gemini_budget: int
) -> None:
    """A Messages ``thinking`` on a non-Anthropic model with the ``reasoning`` capability is
    translated to ``reasoning_effort`` by the edge, and each adapter sends it in its own field;
    Anthropic-kind models keep ``thinking`` itself (``native``), covered by the edge tests."""
    if case.provider not in _EFFORT_IN_PAYLOAD:
        pytest.skip("Anthropic-kind models receive thinking as is")
    request = MessagesRequest.model_validate(
        {
            "model": "public-name",
            "max_tokens": budget + 1000,
            "messages": [{"role": "user", "content": "Think."}],
            "thinking": {"type": "enabled", "budget_tokens": budget},
        }
    )
    body = to_chat(request, native=False, reasoning=True)
    assert body["reasoning_effort"] == effort
    assert "thinking" not in body
    replay = Replay(case.fixture("chat_plain.json"))
    adapter = case.build(httpx.MockTransport(replay))
    try:
        chat = ProviderRequest("chat.completions", body, provider_model="provider-model")
        await adapter.complete(chat, deadline=None)
    finally:
        await adapter.aclose()
    sent = _EFFORT_IN_PAYLOAD[case.provider](replay.payload)
    assert sent == (gemini_budget if case.provider == "gemini" else effort)
