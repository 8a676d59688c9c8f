"""Anthropic Messages API request models: what ``POST /v1/messages`` and ``count_tokens`` accept.

Reference: https://docs.anthropic.com/en/api/messages. Blocks are a union
discriminated by ``type``, so an unknown block kind is a 400 naming it rather
than a block silently dropped. Unknown *fields* are kept (``extra="allow"``)
and ignored by the translation, as the OpenAI surface does: a client that sends
a newer field is not refused for it. Numbers are strict JSON types, and
``temperature``/``top_p`` are bounded as Anthropic bounds them (0..1).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Block",
    "CacheControl",
    "CountTokensRequest",
    "DocumentBlock",
    "ImageBlock",
    "Message",
    "MessagesRequest",
    "TextBlock",
    "Thinking",
    "Tool",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
]


#: The bound of the integer fields a request carries on (gRPC ``int32``; beyond 64 bits
#: even the JSON encoder refuses): larger is a 400 naming the field, not a failed call.
_INT32_MAX = 2**31 - 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class CacheControl(_Open):
    """A prompt-caching breakpoint (``{"type": "ephemeral", "ttl": "5m" | "1h"}``)."""

    type: Literal["ephemeral"]
    ttl: str | None = None


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_Open):
    type: Literal["url"]
    url: str


class TextSource(_Open):
    """A plain-text document."""

    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class FileSource(_Open):
    """A Files API reference: the gateway has no Files API, so it is refused at translation."""

    type: Literal["file"]
    file_id: str


class TextBlock(_Open):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None


class ImageBlock(_Open):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource | FileSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None


class ContentSource(_Open):
    """A document made of blocks (``{"type": "content", "content": [...]}``)."""

    type: Literal["content"]
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]


class DocumentBlock(_Open):
    type: Literal["document"]
    source: Annotated[
        Base64Source | URLSource | TextSource | ContentSource | FileSource,
        Field(discriminator="type"),
    ]
    title: str | None = None
    context: str | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


ResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultPart] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(_Open):
    """An earlier turn's thinking: not sent to non-Anthropic models (they cannot read it)."""

    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Open):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(_Open):
    """A client tool (``type`` absent or ``custom``); any other ``type`` is a server tool."""

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None
    cache_control: CacheControl | None = None


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(_Open):
    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = Field(default=None, ge=1024, le=_INT32_MAX)


class Metadata(_Open):
    user_id: str | None = None


class CountTokensRequest(_Open):
    """``POST /v1/messages/count_tokens``: a Messages request without the sampling fields."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``; ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: int = Field(ge=1, le=_INT32_MAX)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=_INT32_MAX)
    metadata: Metadata | None = None
    #: Automatic prompt caching: one breakpoint the provider places itself.
    cache_control: CacheControl | None = None
