"""The OpenAI side of a translating adapter: a typed view of the chat request, builders of the answer.

Adapters for providers that do not speak OpenAI (Anthropic, Gemini) read the
client's chat body through ``read_chat`` - typed models of exactly the fields
a translation needs, everything else ignored - and write what they received
back as OpenAI ``chat.completion`` / ``chat.completion.chunk`` JSON with
``completion_json`` and ``ChunkWriter``. A body that cannot be read this way
is the client's fault (``InvalidRequest`` naming the field); a field with no
counterpart at the provider is refused by the adapter, never dropped, when
dropping it would change the shape of the answer.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway_common.errors import InvalidRequest

from .base import ProviderRequest, StreamChunk, Usage

__all__ = [
    "ChatMessage",
    "ChatView",
    "ChunkWriter",
    "ContentPart",
    "ToolCall",
    "arguments_of",
    "choice_json",
    "completion_json",
    "data_url",
    "read_chat",
    "text_of",
    "usage_json",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ImageURL(_In):
    url: str


class FileData(_In):
    filename: str | None = None
    file_data: str | None = None


class ContentPart(_In):
    """One content part; ``type`` says which of the other fields is set.

    ``cache_control`` is an extension the edge's Messages surface sets for
    Anthropic-kind models only (a prompt-caching breakpoint on this part).
    """

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: ImageURL | None = None
    file: FileData | None = None
    cache_control: dict[str, Any] | None = None


class FunctionCall(_In):
    name: str
    arguments: str = ""


class ToolCall(_In):
    """An assistant's earlier tool call; ``extra_content`` carries provider state
    (Gemini's thought signature) the gateway itself put there."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    extra_content: dict[str, Any] | None = None


class ThinkingBlock(_In):
    """An assistant's earlier thinking, as Anthropic sent it (the ``thinking_blocks`` extension)."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class ChatMessage(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    thinking_blocks: list[ThinkingBlock] | None = None


class FunctionDef(_In):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_In):
    type: Literal["function"]
    function: FunctionDef
    cache_control: dict[str, Any] | None = None  # extension, as on ``ContentPart``


class _Named(_In):
    name: str


class NamedToolChoice(_In):
    type: Literal["function"]
    function: _Named


class JSONSchemaFormat(_In):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ResponseFormat(_In):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class _StreamOptions(_In):
    include_usage: bool = False


class ChatView(_In):
    """The chat request fields a translation reads (the body itself stays untouched)."""

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, gt=0)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    user: str | None = None
    #: OpenAI's reasoning effort (also what the Messages surface maps ``thinking`` onto).
    reasoning_effort: str | None = None
    stream_options: _StreamOptions | None = None
    #: Anthropic-only extensions the edge's Messages surface sets for Anthropic-kind models.
    top_k: int | None = Field(default=None, ge=0)
    thinking: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None
    anthropic_beta: list[str] | None = None  # the client's anthropic-beta features
    anthropic_version: str | None = None  # the client's anthropic-version

    @property
    def output_limit(self) -> int | None:
        """The client's cap on generated tokens, if it set one."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def wants_usage(self) -> bool:
        """Whether a stream's usage-only final chunk goes to the client."""
        return self.stream_options is not None and self.stream_options.include_usage


#: Every field name (wire spelling) of the view, to tell a path in a validation
#: error from pydantic's union-branch tags ("str", "literal[...]", ...).
_FIELD_NAMES = frozenset(
    field.alias or name
    for model in _In.__subclasses__()
    for name, field in model.model_fields.items()
)


def _path(loc: tuple[int | str, ...]) -> str:
    """``messages[2].content`` for a pydantic error location, up to the first union tag."""
    path = ""
    for step in loc:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step in _FIELD_NAMES:
            path += f".{step}" if path else step
        else:
            break
    return path


def read_chat(req: ProviderRequest) -> ChatView:
    """The typed view of ``req.body``; ``InvalidRequest`` naming the first bad field."""
    if req.operation != "chat.completions":
        raise InvalidRequest(
            f"This provider serves chat completions only, not {req.operation}", param="model"
        )
    try:
        return ChatView.model_validate(req.body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _path(first["loc"])
        raise InvalidRequest(f"Invalid value for '{field}': {first['msg']}", param=field) from exc


def text_of(content: str | list[ContentPart] | None, *, param: str) -> str:
    """The text of a message that may only hold text (parts joined without separator)."""
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[str] = []
    for part in content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "refusal":
            texts.append(part.refusal or "")
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' are not allowed here", param=param
            )
    return "".join(texts)


def data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:<type>;base64,<data>`` URL, else ``None``."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise InvalidRequest("Image data URLs must look like data:<type>;base64,<data>")
    return media_type, data


def arguments_of(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments as the JSON object providers want, not a string."""
    try:
        value = orjson.loads(call.function.arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"The arguments of tool call '{call.id}' are not a JSON object", param="messages"
        )
    return value


# -- the answer ------------------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object for ``usage``; prompt-cache writes, when there were any,
    as the extension ``prompt_tokens_details.cache_write_tokens`` (SDKs keep unknown keys)."""
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def choice_json(
    *, index: int, text: str, tool_calls: list[dict[str, Any]], finish_reason: str
) -> dict[str, Any]:
    """One choice of a ``chat.completion``: content is null when only tools were called."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or (None if tool_calls else ""),
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def completion_json(
    *, id: str, created: int, model: str, choices: list[dict[str, Any]], usage: Usage | None
) -> bytes:
    """A ``chat.completion`` body of ``choices`` (see ``choice_json``)."""
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage_json(usage)
    return orjson.dumps(body)


class ChunkWriter:
    """Writes the ``chat.completion.chunk`` objects of one stream (same id, time, model).

    The chunks are OpenAI's for the client's request: with ``forward_usage``
    (the client asked for ``stream_options.include_usage``) each one has
    ``"usage": null`` and the stream ends with the usage chunk (``"choices": []``);
    without it no chunk has a ``usage`` key and the usage chunk is not forwarded.
    """

    __slots__ = ("_head", "_tail", "forward_usage")

    def __init__(self, *, id: str, created: int, model: str, forward_usage: bool) -> None:
        self._head = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._tail: dict[str, Any] = {"usage": None} if forward_usage else {}
        self.forward_usage = forward_usage

    def delta(
        self,
        delta: dict[str, Any],
        *,
        index: int = 0,
        finish_reason: str | None = None,
        stop_sequence: str | None = None,
    ) -> StreamChunk:
        """One chunk with one choice's delta; a ``finish_reason`` makes it ``final``.

        OpenAI finishes a choice with a chunk of its own whose delta is empty:
        callers pass a ``finish_reason`` only with ``delta={}``. ``stop_sequence``
        (the one that stopped the answer) rides on the choice as an extension.
        """
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if stop_sequence:
            choice["stop_sequence"] = stop_sequence
        data = orjson.dumps({**self._head, "choices": [choice], **self._tail})
        return StreamChunk(data, final=finish_reason is not None)

    def usage(self, usage: Usage) -> StreamChunk:
        """The final usage-only chunk; forwarded only when the client asked for usage."""
        if not self.forward_usage:
            return StreamChunk(None, usage, final=True)
        data = orjson.dumps({**self._head, "choices": [], "usage": usage_json(usage)})
        return StreamChunk(data, usage, final=True)
