"""Anthropic Messages API wire models: the parts of answers and stream events the adapter reads.

Only what comes back from Anthropic is modelled (unknown fields ignored, so
new block or event kinds do not break reading); the request payload is built
as plain JSON by ``anthropic.to_provider``. Reference:
https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from .base import Usage

__all__ = ["Block", "ErrorEnvelope", "Event", "Message", "WireUsage"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireUsage(_Wire):
    """Anthropic's token counts; ``input_tokens`` excludes both kinds of cache tokens.

    In a stream, ``message_start`` carries the first counts and each
    ``message_delta`` the cumulative ones it knows, hence every field may be absent.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def updated(self, later: WireUsage) -> WireUsage:
        """These counts with every count ``later`` reports taking precedence."""
        return self.model_copy(update=later.model_dump(exclude_none=True))

    def to_usage(self) -> Usage:
        """OpenAI's reading: cache reads and writes are prompt tokens; reads are cached,
        writes ``cache_write_tokens``."""
        cached = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        prompt = (self.input_tokens or 0) + cached + written
        completion = self.output_tokens or 0
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=cached,
            cache_write_tokens=written,
        )


class Block(_Wire):
    """One content block: ``text``, ``tool_use`` and ``thinking`` matter; others are skipped."""

    type: str
    text: str = ""
    thinking: str = ""
    signature: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None

    def tool_call(self, *, arguments: str | None = None) -> dict[str, Any]:
        """A ``tool_use`` block as an OpenAI tool call (``arguments``: override the input)."""
        if arguments is None:
            arguments = orjson.dumps(self.input or {}).decode()
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


class Message(_Wire):
    """A Messages API answer (also the skeleton inside ``message_start``)."""

    id: str
    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: WireUsage = WireUsage()


class Delta(_Wire):
    """``content_block_delta`` (text_delta, input_json_delta, ...) or ``message_delta`` delta."""

    type: str = ""
    text: str = ""
    thinking: str = ""
    signature: str = ""
    partial_json: str = ""
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorBody(_Wire):
    type: str = ""
    message: str = ""


class ErrorEnvelope(_Wire):
    """An error answer, and the ``error`` stream event."""

    error: ErrorBody


class Event(_Wire):
    """One stream event; which fields are set depends on ``type``."""

    type: str
    message: Message | None = None
    index: int = 0
    content_block: Block | None = None
    delta: Delta | None = None
    usage: WireUsage | None = None
    error: ErrorBody | None = None
