"""The router's OpenAI answer as Anthropic's Message and stream events (the outbound direction).

A ``chat.completion`` becomes one Message::

    id          msg_<completion id without chatcmpl->  (an Anthropic id is kept as is)
    model       the model the client asked for
    content     thinking (``reasoning_content``), text, then one tool_use per tool call
    stop_reason stop -> end_turn (stop_sequence when the provider names the sequence),
                length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal
    usage       input_tokens = prompt - cache reads - cache writes, output_tokens,
                cache_read_input_tokens (prompt_tokens_details.cached_tokens),
                cache_creation_input_tokens (the router's ``cache_write_tokens``)

A stream's chunks become Anthropic's events, in Anthropic's order::

    message_start, ping
    content_block_start / content_block_delta* / content_block_stop   per block:
        thinking (thinking_delta, signature_delta), text (text_delta),
        tool_use (input_json_delta)
    message_delta (stop_reason, usage), message_stop

``generation_context`` (only when the project turned it on for Messages, see
``edge.api.routes.messages``) is a top-level field of the Message, and of the
stream's ``message_delta``.

A block opens when its first delta arrives and closes when a delta of another
block arrives (or at the end); tool calls are numbered as blocks in arrival
order. The router always asks for the usage chunk, which fills
``message_delta``'s usage; ``message_start`` carries the gateway's estimate of
the input tokens (Anthropic's exact count is only known at the end through a
translation). A failure ends the stream with an ``error`` event.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_common.errors import GatewayError, ProviderError

from .errors import error_event

__all__ = ["MessageStream", "message_body", "message_id", "stop_reason", "usage_json"]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Function(_In):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(_In):
    index: int = 0
    id: str | None = None
    function: _Function = _Function()


class _ThinkingBlock(_In):
    type: str = "thinking"
    thinking: str = ""
    signature: str = ""


class _Message(_In):
    """A choice's ``message`` or a chunk's ``delta``.

    ``thinking_blocks`` (with their signatures) and ``reasoning_signature`` are the
    router's Anthropic adapter's extensions; ``reasoning_content`` / ``reasoning``
    is how OpenAI-compatible reasoning providers send thinking.
    """

    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    thinking_blocks: list[_ThinkingBlock] | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None

    @property
    def thinking(self) -> str | None:
        return self.reasoning_content or self.reasoning


class _Choice(_In):
    index: int = 0
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None
    stop_sequence: str | None = None  # an extension the Anthropic adapter may set


class _PromptDetails(_In):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _Usage(_In):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None


class _Answer(_In):
    """A ``chat.completion`` or one ``chat.completion.chunk``."""

    id: str = ""
    choices: list[_Choice] = []
    usage: _Usage | None = None
    #: The router's priced line items, when the project turned them on for Messages.
    generation_context: dict[str, Any] | None = None


def message_id(completion_id: str) -> str:
    """Anthropic's ``msg_...`` id for a completion id."""
    if completion_id.startswith("msg_"):
        return completion_id
    return "msg_" + (completion_id.removeprefix("chatcmpl-") or "gateway")


def stop_reason(finish_reason: str | None, stop_sequence: str | None = None) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason``."""
    if stop_sequence:
        return "stop_sequence"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_json(usage: _Usage | None) -> dict[str, int]:
    """Anthropic's usage object (``input_tokens`` excludes both kinds of cache tokens)."""
    if usage is None:
        usage = _Usage()
    details = usage.prompt_tokens_details or _PromptDetails()
    read = details.cached_tokens or 0
    written = details.cache_write_tokens or 0
    return {
        "input_tokens": max(usage.prompt_tokens - read - written, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def _parse(raw: bytes) -> _Answer:
    try:
        return _Answer.model_validate_json(raw)
    except ValidationError:
        raise ProviderError("The provider sent an answer that could not be read.") from None


def _tool_input(arguments: str | None) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProviderError("The model called a tool with arguments that are not a JSON object.")
    return value


def message_body(raw: bytes, *, model: str) -> bytes:
    """The Message for one ``chat.completion`` body (``ProviderError`` if unreadable)."""
    answer = _parse(raw)
    choice = answer.choices[0] if answer.choices else _Choice()
    said = choice.message or _Message()
    content: list[dict[str, Any]] = []
    if said.thinking_blocks:
        content.extend(block.model_dump() for block in said.thinking_blocks)
    elif said.thinking:
        content.append({"type": "thinking", "thinking": said.thinking, "signature": ""})
    if text := (said.content or said.refusal):
        content.append({"type": "text", "text": text})
    for call in said.tool_calls or ():
        content.append(
            {
                "type": "tool_use",
                "id": call.id or "",
                "name": call.function.name or "",
                "input": _tool_input(call.function.arguments),
            }
        )
    message: dict[str, Any] = {
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason, choice.stop_sequence),
        "stop_sequence": choice.stop_sequence,
        "usage": usage_json(answer.usage),
    }
    if answer.generation_context is not None:
        message["generation_context"] = answer.generation_context
    return orjson.dumps(message)


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return (
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"
    )


class MessageStream:
    """The ``Shaper`` of one Messages call: bodies as Messages, chunks as events.

    Stateful, one per call (see the module docstring for the event order).
    ``done`` is read once, after the last chunk: it closes the open block and
    writes ``message_delta`` and ``message_stop``.
    """

    def __init__(self, *, model: str, input_tokens: int) -> None:
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._blocks = 0  # blocks opened so far
        self._open: str | None = None  # "thinking", "text" or "tool:<index>"
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: _Usage | None = None
        self._context: dict[str, Any] | None = None

    async def body(self, body: bytes) -> bytes:
        return message_body(body, model=self._model)

    async def frame(self, chunk: bytes) -> bytes:
        answer = _parse(chunk)
        out: list[bytes] = []
        if not self._started:
            out.append(self._start(answer.id))
        if answer.usage is not None:
            self._usage = answer.usage
        if answer.generation_context is not None:
            self._context = answer.generation_context
        for choice in answer.choices:
            if choice.index != 0:
                continue  # the translation never asks for n > 1
            if choice.delta is not None:
                out.extend(self._delta(choice.delta))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
                self._stop_sequence = choice.stop_sequence or self._stop_sequence
        return b"".join(out)

    async def finish(self) -> bytes:
        out = [] if self._started else [self._start("")]
        out.append(self._close())
        usage = usage_json(self._usage)
        delta = {
            "stop_reason": stop_reason(self._finish, self._stop_sequence),
            "stop_sequence": self._stop_sequence,
        }
        end: dict[str, Any] = {"delta": delta, "usage": usage}
        if self._context is not None:
            end["generation_context"] = self._context
        out.append(_event("message_delta", end))
        out.append(_event("message_stop", {}))
        return b"".join(out)

    @staticmethod
    def error_frame(err: GatewayError) -> bytes:
        """The ``error`` event that ends a failed stream."""
        return error_event(err)

    def _start(self, completion_id: str) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(completion_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_tokens,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return _event("message_start", {"message": message}) + _event("ping", {})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._blocks - 1})

    def _switch(self, block: str, content_block: dict[str, Any]) -> bytes:
        """Close the open block and open ``block`` (unless it is the open one)."""
        if self._open == block:
            return b""
        closed = self._close()
        self._open = block
        self._blocks += 1
        start = {"index": self._blocks - 1, "content_block": content_block}
        return closed + _event("content_block_start", start)

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": self._blocks - 1, "delta": delta})

    def _delta(self, delta: _Message) -> list[bytes]:
        out: list[bytes] = []
        if thinking := delta.thinking:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            out.append(self._switch("thinking", block))
            out.append(self._block_delta({"type": "thinking_delta", "thinking": thinking}))
        if (signature := delta.reasoning_signature) and self._open == "thinking":
            out.append(self._block_delta({"type": "signature_delta", "signature": signature}))
        if text := (delta.content or delta.refusal):
            out.append(self._switch("text", {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.tool_calls or ():
            name = f"tool:{call.index}"
            if self._open != name:
                if call.id is None and call.function.name is None:
                    raise ProviderError(
                        "The provider continued a tool call after another block began."
                    )
                start: dict[str, Any] = {"type": "tool_use", "id": call.id or ""}
                start |= {"name": call.function.name or "", "input": {}}
                out.append(self._switch(name, start))
            if call.function.arguments:
                piece = {"type": "input_json_delta", "partial_json": call.function.arguments}
                out.append(self._block_delta(piece))
        return out
