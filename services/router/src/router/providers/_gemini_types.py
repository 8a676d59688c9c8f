"""Gemini API wire models: the parts of ``GenerateContentResponse`` and errors the adapter reads.

Field names are Gemini's camelCase on the wire, snake_case here. Only answers
are modelled (unknown fields ignored); the request is built as plain JSON by
``gemini.to_provider``. Reference: https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .base import Usage

__all__ = ["Candidate", "ErrorEnvelope", "GenerateContentResponse", "Part", "UsageMetadata"]


class _Wire(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class FunctionCall(_Wire):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class Part(_Wire):
    """One part: text (``thought`` marks a thinking summary) or a function call."""

    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = None
    thought_signature: str | None = None

    def tool_call(self, number: int) -> dict[str, Any]:
        """A function call part as OpenAI tool call ``number`` of its choice.

        Gemini rarely sends call ids, so ``call_<number>`` stands in; a thought
        signature rides along as ``extra_content.google.thought_signature``.
        """
        assert self.function_call is not None
        call: dict[str, Any] = {
            "id": self.function_call.id or f"call_{number}",
            "type": "function",
            "function": {
                "name": self.function_call.name,
                "arguments": orjson.dumps(self.function_call.args or {}).decode(),
            },
        }
        if self.thought_signature:
            call["extra_content"] = {"google": {"thought_signature": self.thought_signature}}
        return call


class Content(_Wire):
    role: str = ""
    parts: list[Part] = []


class Candidate(_Wire):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0

    @property
    def text(self) -> str:
        """The answer's text; thought summaries are not part of it."""
        parts = self.content.parts if self.content else []
        return "".join(p.text for p in parts if p.text and not p.thought)

    @property
    def calls(self) -> list[Part]:
        """The function call parts, in order."""
        parts = self.content.parts if self.content else []
        return [p for p in parts if p.function_call is not None]


class UsageMetadata(_Wire):
    """Gemini's counts: prompt includes cached content; thoughts are not in candidates."""

    prompt_token_count: int = 0
    candidates_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0

    def to_usage(self) -> Usage:
        """OpenAI's reading: completion tokens include the thinking (as reasoning tokens)."""
        prompt = self.prompt_token_count + self.tool_use_prompt_token_count
        completion = self.candidates_token_count + self.thoughts_token_count
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=self.cached_content_token_count,
            reasoning_tokens=self.thoughts_token_count,
        )


class PromptFeedback(_Wire):
    block_reason: str | None = None


class _ErrorFields(_Wire):
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = []


class GenerateContentResponse(_Wire):
    """A whole answer, or one event of a stream (which may carry an ``error`` instead)."""

    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    model_version: str = ""
    response_id: str = ""
    prompt_feedback: PromptFeedback | None = None
    error: _ErrorFields | None = None


class ErrorEnvelope(_Wire):
    """An error answer: ``{"error": {"code", "message", "status", "details"}}``."""

    error: _ErrorFields

    def retry_delay(self) -> float | None:
        """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "2s"``), if any."""
        for detail in self.error.details:
            if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                delay = str(detail.get("retryDelay", ""))
                try:
                    return float(delay.removesuffix("s"))
                except ValueError:
                    return None
        return None
