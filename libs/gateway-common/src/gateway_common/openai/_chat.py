"""``POST /v1/chat/completions`` request body.

The envelope (``model``, ``messages`` with role and content shape, the
streaming switches) is typed and required. OpenAI's documented parameters are
typed too, all optional and nullable, so a wrong JSON type is a 400 naming the
field instead of an upstream surprise, and the parameters OpenAI bounds carry
OpenAI's ranges (``_bounds``: ``temperature`` 0..2, ``max_tokens`` >= 1, ``n``
1..128, ...), so an out-of-range value is a 400 before any provider sees it.
Types are strict: ``"0.5"`` is not a number, though ``1`` is a float.
Anything else, including fields OpenAI adds later, is kept as an extra field
and reaches the provider untouched (the gateway forwards the original bytes
anyway).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ._bounds import ChoiceCount, LogitBias, Penalty, Temperature, TokenLimit, TopLogprobs, TopP

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ContentPart",
    "FunctionDefinition",
    "ResponseFormat",
    "Role",
    "StreamOptions",
    "ToolDefinition",
]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    """Base of request models: unknown fields are kept, not refused; JSON types are strict."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Open):
    """One part of a multi-part message content (text, image_url, input_audio, file, ...)."""

    type: str = Field(description="Part kind; the kind-specific fields are passed through.")
    text: str | None = Field(default=None, description="The text of a ``text`` part.")


class ChatMessage(_Open):
    """One conversation message. ``content`` is a string, a list of parts, or null."""

    role: Role
    content: str | list[ContentPart] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, value: Any) -> Any:
        # Checked up front so a wrong type yields one error naming the field,
        # instead of one error per branch of the union.
        if value is None or isinstance(value, str | list):
            return value
        raise PydanticCustomError(
            "content_type", "expected a string, an array of content parts, or null"
        )


class StreamOptions(_Open):
    """``stream_options``: only ``include_usage`` matters to the gateway."""

    include_usage: bool = False


class FunctionDefinition(_Open):
    """``tools[i].function``: only the name is required; the schema is passed through."""

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Open):
    """One entry of ``tools`` (``function``, or kinds OpenAI adds, such as ``custom``)."""

    type: str
    function: FunctionDefinition | None = None


class ResponseFormat(_Open):
    """``response_format``: ``text``, ``json_object`` or ``json_schema`` (schema passed through)."""

    type: str
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(_Open):
    """The chat completion request (see module docstring)."""

    model: str = Field(min_length=1, description="Public model name, alias or provider/model.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    stream: bool = Field(default=False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None

    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
