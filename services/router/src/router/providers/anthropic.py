"""Adapter for the Anthropic Messages API (``POST {base_url}/messages``).

The client speaks OpenAI chat completions; this module translates both ways:

    OpenAI chat body --to_provider--> Messages request
    Messages answer  --from_provider--> chat.completion
    Messages stream  --StreamTranslator--> chat.completion.chunk objects

Request: system and developer messages become the top-level ``system``;
tool results become ``tool_result`` blocks of a user turn, and consecutive
turns of one role are merged (Anthropic wants user/assistant alternation);
images become ``image`` blocks (data URLs as base64, other URLs by reference);
``max_tokens`` is required, so it falls back to the catalog model's output cap
and then to 4096. Fields with no Anthropic counterpart that only tune sampling
(seed, penalties, ...) are dropped; ``n > 1``, ``logprobs`` and JSON
``response_format`` would change the answer's shape and are refused.

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's
``prompt_tokens`` includes both, with the reads as ``cached_tokens`` and the
writes as ``cache_write_tokens`` (``prompt_tokens_details.cache_write_tokens``).

Extensions (set by the edge's Messages surface, for Anthropic-kind models only,
so that a Messages request loses nothing on the way): ``cache_control`` on
content parts, system parts and tools, top-level ``top_k``, ``thinking`` and
``cache_control``, ``anthropic_beta`` (sent as the ``anthropic-beta`` header),
``anthropic_version`` (the client's ``anthropic-version``, sent on when it is one of
``SUPPORTED_VERSIONS``, the router's own otherwise; a version pinned in the catalog
entry's ``headers`` always wins), ``file`` parts (a PDF or text document as a data URL) become
Anthropic's own fields and ``document`` blocks. Back, thinking blocks become
``reasoning_content`` (message and deltas) and a matched stop sequence the
choice's ``stop_sequence``: keys OpenAI clients ignore.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncGenerator
from types import MappingProxyType
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import GatewayError, InvalidRequest, ProviderUnavailable

from ._anthropic_types import ErrorEnvelope, Event, Message, WireUsage
from ._chat import (
    ChatMessage,
    ChatView,
    ChunkWriter,
    ContentPart,
    arguments_of,
    choice_json,
    completion_json,
    data_url,
    read_chat,
    text_of,
)
from ._client import ProviderClient, new_client
from ._http import list_names, overloaded, send, sse_events, status_error
from .base import Completion, ProviderRequest, StreamChunk
from .sse import ServerSentEvent

__all__ = [
    "ANTHROPIC_VERSION",
    "SUPPORTED_VERSIONS",
    "AnthropicAdapter",
    "StreamTranslator",
    "build",
    "from_provider",
    "to_provider",
]

#: The ``anthropic-version`` header this translation is written against.
ANTHROPIC_VERSION = "2023-06-01"
#: The ``anthropic-version`` values whose wire format this translation reads and writes:
#: a client's version is sent on only when it is one of these (else ``ANTHROPIC_VERSION``).
#: Add one here once the adapter's fixtures have been checked against it.
SUPPORTED_VERSIONS: frozenset[str] = frozenset({ANTHROPIC_VERSION})

#: ``max_tokens`` when neither the client nor the catalog gives a limit.
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)

_TOOL_CHOICES = MappingProxyType({"auto": "auto", "none": "none", "required": "any"})


# -- request -------------------------------------------------------------------


def to_provider(req: ProviderRequest, *, stream: bool) -> bytes:
    """The Messages request for ``req`` (``InvalidRequest`` if it cannot be expressed)."""
    return _payload(req, read_chat(req), stream=stream)


def _payload(req: ProviderRequest, chat: ChatView, *, stream: bool) -> bytes:
    _refuse_unsupported(chat)
    system, messages = _messages(chat.messages)
    payload: dict[str, Any] = {
        "model": req.provider_model,
        "max_tokens": chat.output_limit or req.max_output_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        payload["system"] = system
    if chat.temperature is not None:
        payload["temperature"] = chat.temperature
    if chat.top_p is not None:
        payload["top_p"] = chat.top_p
    if stops := chat.stop_sequences:
        payload["stop_sequences"] = stops
    if chat.tools:
        payload["tools"] = [
            {
                "name": tool.function.name,
                **({"description": d} if (d := tool.function.description) else {}),
                "input_schema": tool.function.parameters or {"type": "object", "properties": {}},
                **({"cache_control": c} if (c := tool.cache_control) else {}),
            }
            for tool in chat.tools
        ]
        if (choice := _tool_choice(chat)) is not None:
            payload["tool_choice"] = choice
    if chat.user:
        payload["metadata"] = {"user_id": chat.user}
    if chat.top_k is not None:
        payload["top_k"] = chat.top_k
    if chat.thinking is not None:
        payload["thinking"] = chat.thinking
    if chat.cache_control is not None:
        payload["cache_control"] = chat.cache_control
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


def _refuse_unsupported(chat: ChatView) -> None:
    if chat.n is not None and chat.n > 1:
        raise InvalidRequest("Anthropic models return one choice; n must be 1", param="n")
    if chat.logprobs:
        raise InvalidRequest("Anthropic models do not return logprobs", param="logprobs")
    if chat.response_format is not None and chat.response_format.type != "text":
        raise InvalidRequest(
            "response_format json_object and json_schema are not supported for Anthropic "
            "models; describe the JSON in the prompt or use a tool instead",
            param="response_format",
        )


def _tool_choice(chat: ChatView) -> dict[str, Any] | None:
    choice = chat.tool_choice
    if choice is None and chat.parallel_tool_calls is not False:
        return None  # Anthropic's default, auto, is OpenAI's
    if choice is None or isinstance(choice, str):
        out: dict[str, Any] = {"type": _TOOL_CHOICES[choice or "auto"]}
    else:
        out = {"type": "tool", "name": choice.function.name}
    if chat.parallel_tool_calls is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, turns)``: system text hoisted, same-role turns merged in order."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}].content"
        match message.role:
            case "system" | "developer":
                system.extend(_text_blocks(message.content, param))
                continue
            case "user":
                role, blocks = "user", _user_blocks(message.content, param)
            case "assistant":
                role, blocks = "assistant", _assistant_blocks(message, param)
            case "tool":
                role, blocks = "user", [_tool_result(message, i)]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _text_block(text: str, part: ContentPart | None = None) -> list[dict[str, Any]]:
    # Anthropic refuses empty text blocks; an empty string carries nothing anyway.
    return _cached([{"type": "text", "text": text}] if text else [], part)


def _cached(blocks: list[dict[str, Any]], part: ContentPart | None) -> list[dict[str, Any]]:
    """``blocks`` with ``part``'s cache breakpoint on the last (the extension, see above)."""
    if blocks and part is not None and part.cache_control is not None:
        blocks[-1]["cache_control"] = part.cache_control
    return blocks


def _text_blocks(content: str | list[ContentPart] | None, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_block(content or "")
    return [block for part in content for block in _text_block(text_of([part], param=param), part)]


def _user_blocks(content: str | list[ContentPart] | None, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_block(content or "")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "image_url" and part.image_url is not None:
            image = {"type": "image", "source": _image_source(part.image_url.url)}
            blocks.extend(_cached([image], part))
        elif part.type == "file" and part.file is not None and part.file.file_data:
            blocks.extend(_cached([_document(part.file.file_data, param)], part))
        else:
            blocks.extend(_text_block(text_of([part], param=param), part))
    return blocks


def _document(file_data: str, param: str) -> dict[str, Any]:
    """A ``file`` part's data URL as a ``document`` block (PDF as base64, text as text)."""
    inline = data_url(file_data)
    if inline is None:
        raise InvalidRequest("A file part needs a data URL in file_data", param=param)
    media_type, data = inline
    if media_type == "text/plain":
        text = base64.b64decode(data).decode("utf-8", "replace")
        return {
            "type": "document",
            "source": {"type": "text", "media_type": media_type, "data": text},
        }
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _image_source(url: str) -> dict[str, str]:
    if (inline := data_url(url)) is not None:
        media_type, data = inline
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(message: ChatMessage, param: str) -> list[dict[str, Any]]:
    # Earlier thinking goes back first and unchanged: Anthropic checks its signature.
    blocks = [b.model_dump(exclude_none=True) for b in message.thinking_blocks or ()]
    blocks += _text_blocks(message.content, param)
    for call in message.tool_calls or ():
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_of(call),
            }
        )
    return blocks


def _tool_result(message: ChatMessage, i: int) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest("A tool message needs its tool_call_id", param=f"messages[{i}]")
    return {
        "type": "tool_result",
        "tool_use_id": message.tool_call_id,
        "content": text_of(message.content, param=f"messages[{i}].content"),
    }


# -- answer --------------------------------------------------------------------


def from_provider(content: bytes, provider: str, *, created: int) -> Completion:
    """A Messages answer as a ``chat.completion`` body (stamped ``created``) with its usage."""
    try:
        message = Message.model_validate_json(content)
    except ValidationError:
        raise ProviderUnavailable(
            f"Provider `{provider}` sent a body that is not a Messages answer"
        ) from None
    usage = message.usage.to_usage()
    choice = choice_json(
        index=0,
        text="".join(block.text for block in message.content if block.type == "text"),
        tool_calls=[block.tool_call() for block in message.content if block.type == "tool_use"],
        finish_reason=_FINISH_REASONS.get(message.stop_reason or "", "stop"),
    )
    thinking = [block for block in message.content if block.type == "thinking"]
    if thinking:
        choice["message"]["reasoning_content"] = "".join(block.thinking for block in thinking)
        choice["message"]["thinking_blocks"] = [
            {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
            for block in thinking
        ]
    if message.stop_sequence:
        choice["stop_sequence"] = message.stop_sequence
    body = completion_json(
        id=message.id, created=created, model=message.model, choices=[choice], usage=usage
    )
    return Completion(body=body, usage=usage)


class StreamTranslator:
    """Turns the events of one Messages stream into chat.completion chunks, in order.

    ``feed`` returns the chunk an event becomes, or ``None`` for events with
    nothing to forward (ping, block stops, thinking). ``message_stop`` yields
    the usage-only chunk and sets ``done``; an ``error`` event raises
    ``ProviderUnavailable``. Content blocks are numbered across text and tool
    use; OpenAI numbers tool calls alone, hence ``_tool_index``.
    """

    __slots__ = (
        "_created",
        "_forward_usage",
        "_provider",
        "_tool_index",
        "_usage",
        "_writer",
        "done",
    )

    def __init__(self, provider: str, *, forward_usage: bool, created: int) -> None:
        self._provider = provider
        self._forward_usage = forward_usage
        self._created = created
        self._writer: ChunkWriter | None = None
        self._tool_index: dict[int, int] = {}
        self._usage = WireUsage()
        self.done = False

    def feed(self, sse: ServerSentEvent) -> StreamChunk | None:
        """The chunk for one server-sent event (see the class docstring)."""
        try:
            event = Event.model_validate_json(sse.data)
        except ValidationError:
            raise self._broken("an unreadable stream event") from None
        if event.type == "error":
            detail = event.error.message if event.error else "unknown error"
            said = f"Provider `{self._provider}` failed mid-stream: {detail}"
            if event.error is not None and event.error.type == "overloaded_error":
                raise overloaded(said)
            raise ProviderUnavailable(said)
        if event.type == "message_start" and event.message is not None:
            message = event.message
            self._usage = message.usage
            self._writer = ChunkWriter(
                id=message.id,
                created=self._created,
                model=message.model,
                forward_usage=self._forward_usage,
            )
            return self._writer.delta({"role": "assistant", "content": ""})
        if event.type not in _HANDLED:  # ping, content_block_stop, kinds added later
            return None
        if self._writer is None:
            raise self._broken(f"'{event.type}' before message_start")
        return _HANDLED[event.type](self, self._writer, event)

    def _block_start(self, writer: ChunkWriter, event: Event) -> StreamChunk | None:
        block = event.content_block
        if block is None:
            return None
        if block.type == "text" and block.text:
            return writer.delta({"content": block.text})
        if block.type != "tool_use":
            return None
        index = self._tool_index.setdefault(event.index, len(self._tool_index))
        # The input arrives as input_json_delta events, so the call starts with no arguments.
        call = {"index": index, **block.tool_call(arguments="")}
        return writer.delta({"tool_calls": [call]})

    def _block_delta(self, writer: ChunkWriter, event: Event) -> StreamChunk | None:
        delta = event.delta
        if delta is None:
            return None
        if delta.type == "text_delta" and delta.text:
            return writer.delta({"content": delta.text})
        if delta.type == "thinking_delta" and delta.thinking:
            return writer.delta({"reasoning_content": delta.thinking})
        if delta.type == "signature_delta" and delta.signature:
            return writer.delta({"reasoning_signature": delta.signature})
        if delta.type == "input_json_delta" and delta.partial_json:
            index = self._tool_index.get(event.index)
            if index is None:
                raise self._broken("tool input for a block that is not a tool call")
            call = {"index": index, "function": {"arguments": delta.partial_json}}
            return writer.delta({"tool_calls": [call]})
        return None

    def _message_delta(self, writer: ChunkWriter, event: Event) -> StreamChunk | None:
        if event.usage is not None:
            self._usage = self._usage.updated(event.usage)
        reason = event.delta.stop_reason if event.delta else None
        return writer.delta(
            {},
            finish_reason=_FINISH_REASONS.get(reason or "", "stop"),
            stop_sequence=event.delta.stop_sequence if event.delta else None,
        )

    def _message_stop(self, writer: ChunkWriter, event: Event) -> StreamChunk | None:
        self.done = True
        return writer.usage(self._usage.to_usage())

    def _broken(self, what: str) -> ProviderUnavailable:
        return ProviderUnavailable(f"Provider `{self._provider}` sent {what} mid-stream")


_HANDLED = MappingProxyType(
    {
        "content_block_start": StreamTranslator._block_start,
        "content_block_delta": StreamTranslator._block_delta,
        "message_delta": StreamTranslator._message_delta,
        "message_stop": StreamTranslator._message_stop,
    }
)


def _map_error(response: httpx.Response, provider: str) -> GatewayError:
    """Our error for a non-2xx answer (body read): 429/529/5xx retryable, other 4xx not."""
    try:
        message: str | None = ErrorEnvelope.model_validate_json(response.content).error.message
    except ValidationError:
        message = None
    return status_error(response, provider, message)


# -- the adapter ---------------------------------------------------------------


class AnthropicAdapter:
    """``ProviderAdapter`` for the Messages API over one pooled ``ProviderClient``.

    The client carries the base URL (``.../v1``), ``anthropic-version`` and the
    configured ``x-api-key``; a caller's own key replaces it per call, and so does a
    caller's supported ``anthropic-version`` unless ``pinned`` (the catalog set one).
    """

    def __init__(self, name: str, client: ProviderClient, *, pinned: bool = False) -> None:
        self._name = name
        self._client = client
        self._pinned = pinned

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"AnthropicAdapter({self._name!r}, {self._client.base_url})"

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        chat = read_chat(req)
        request = self._request(req, _payload(req, chat, stream=False), deadline, chat)
        response = await send(self._client, request, self._map)
        return from_provider(response.content, self._name, created=int(time.time()))

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        chat = read_chat(req)
        request = self._request(req, _payload(req, chat, stream=True), deadline, chat)
        translator = StreamTranslator(
            self._name, forward_usage=chat.wants_usage, created=int(time.time())
        )
        # The request is handed over, not kept: sse_events drops its body once sent.
        events = sse_events(self._client, request, self._map)
        del request
        async with contextlib.aclosing(events):
            async for event in events:
                if (chunk := translator.feed(event)) is not None:
                    yield chunk
                if translator.done:
                    return
        raise ProviderUnavailable(f"Provider `{self._name}` ended the stream before message_stop")

    async def list_models(self) -> tuple[str, ...]:
        """The first page of ``GET /models``, asked as large as Anthropic allows."""
        return await list_names(
            self._client,
            "models",
            self._map,
            self._name,
            items="data",
            key="id",
            params={"limit": 1000},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _map(self, response: httpx.Response) -> GatewayError:
        return _map_error(response, self._name)

    def _request(
        self, req: ProviderRequest, payload: bytes, deadline: float | None, chat: ChatView
    ) -> httpx.Request:
        headers: dict[str, str] = {}
        if not self._pinned and chat.anthropic_version in SUPPORTED_VERSIONS:
            headers["anthropic-version"] = chat.anthropic_version
        if req.provider_key:
            headers["x-api-key"] = req.provider_key
        if chat.anthropic_beta:
            headers["anthropic-beta"] = ",".join(chat.anthropic_beta)
        return self._client.request(
            "POST", "messages", content=payload, headers=headers or None, deadline=deadline
        )


def build(
    name: str,
    entry: ProviderEntry,
    api_key: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AnthropicAdapter:
    """Adapter factory for catalog kind ``anthropic`` (``base_url`` like https://api.anthropic.com/v1)."""
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    pinned = any(header.lower() == "anthropic-version" for header in entry.headers)
    return AnthropicAdapter(name, new_client(entry, headers, transport=transport), pinned=pinned)
