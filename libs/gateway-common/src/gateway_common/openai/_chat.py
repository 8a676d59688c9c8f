"""``POST /v1/chat/completions`` request body.

Only the envelope is typed: ``model``, ``messages`` (role and content shape)
and the streaming switches. Sampling parameters, tools, response formats and
anything OpenAI adds later are kept as extra fields and reach the provider
untouched (the gateway forwards the original bytes anyway).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

__all__ = ["ChatCompletionRequest", "ChatMessage", "ContentPart", "Role", "StreamOptions"]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    """Base of request models: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")


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


class ChatCompletionRequest(_Open):
    """The chat completion request envelope (see module docstring)."""

    model: str = Field(min_length=1, description="Public model name, alias or provider/model.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    stream: bool = Field(default=False, strict=True, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
