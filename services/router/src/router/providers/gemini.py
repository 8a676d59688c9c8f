"""Adapter for the Google Gemini API (``generateContent`` / ``streamGenerateContent``).

The client speaks OpenAI chat completions; this module translates both ways:

    OpenAI chat body    --to_provider--> GenerateContentRequest
    GenerateContentResponse --from_provider--> chat.completion
    SSE of responses    --StreamTranslator--> chat.completion.chunk objects

Request: system and developer messages become ``systemInstruction``; the
assistant is the ``model`` role; tool calls and results become
``functionCall`` / ``functionResponse`` parts (a result is matched to its
call's function name through ``tool_call_id``), and consecutive turns of one
role are merged. Tool parameters and ``response_format`` schemas are JSON
Schema, so they go to ``parametersJsonSchema`` / ``responseJsonSchema``
(Gemini's OpenAPI-subset ``parameters`` / ``responseSchema`` refuse common
JSON Schema keywords such as ``additionalProperties``). ``n`` becomes
``candidateCount``; ``logprobs`` is refused.

Answer: Gemini gives no tool call ids, so calls get ``call_<n>`` ids unless
Gemini sent one; a thinking model's ``thoughtSignature`` rides on the tool
call as ``extra_content.google.thought_signature`` (the convention of
Google's own OpenAI endpoint) and is sent back on the next turn. Thought
summaries are not forwarded; their tokens count as reasoning tokens.

Embeddings are not offered: ``batchEmbedContents`` reports no token usage,
so they could not be billed.
"""

from __future__ import annotations

import contextlib
import mimetypes
import time
from collections.abc import AsyncGenerator
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import GatewayError, InvalidRequest, ProviderUnavailable

from ._chat import (
    ChatMessage,
    ChatView,
    ChunkWriter,
    ContentPart,
    ToolCall,
    arguments_of,
    choice_json,
    completion_json,
    data_url,
    read_chat,
    text_of,
)
from ._client import ProviderClient, new_client
from ._gemini_types import Candidate, ErrorEnvelope, GenerateContentResponse
from ._http import list_names, send, sse_events, status_error
from .base import Completion, ProviderRequest, StreamChunk, Usage
from .sse import ServerSentEvent

__all__ = ["GeminiAdapter", "StreamTranslator", "build", "from_provider", "to_provider"]

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH_REASONS = MappingProxyType(
    {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}
)

_TOOL_MODES = MappingProxyType({"auto": "AUTO", "none": "NONE", "required": "ANY"})


# -- request -------------------------------------------------------------------


def to_provider(req: ProviderRequest) -> bytes:
    """The GenerateContentRequest for ``req`` (``InvalidRequest`` if it cannot be expressed).

    Streaming is chosen by the URL, not the payload, so one payload serves both.
    """
    return _payload(read_chat(req))


def _payload(chat: ChatView) -> bytes:
    if chat.logprobs:
        raise InvalidRequest("Gemini models do not return logprobs here", param="logprobs")
    system, contents = _contents(chat.messages)
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if config := _generation_config(chat):
        payload["generationConfig"] = config
    if chat.tools:
        payload["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": tool.function.name,
                        **({"description": d} if (d := tool.function.description) else {}),
                        **({"parametersJsonSchema": p} if (p := tool.function.parameters) else {}),
                    }
                    for tool in chat.tools
                ]
            }
        ]
        if chat.tool_choice is not None:
            payload["toolConfig"] = {"functionCallingConfig": _calling_config(chat)}
    return orjson.dumps(payload)


#: ``reasoning_effort`` -> ``thinkingConfig.thinkingBudget``, as Gemini's own OpenAI-compatible
#: endpoint maps it; another value sets no budget (the model's default).
_THINKING_BUDGETS = {"none": 0, "low": 1024, "medium": 8192, "high": 24576}


def _generation_config(chat: ChatView) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if (budget := _THINKING_BUDGETS.get(chat.reasoning_effort or "")) is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget}
    for key, value in (
        ("temperature", chat.temperature),
        ("topP", chat.top_p),
        ("maxOutputTokens", chat.output_limit),
        ("candidateCount", chat.n),
        ("seed", chat.seed),
        ("presencePenalty", chat.presence_penalty),
        ("frequencyPenalty", chat.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    if stops := chat.stop_sequences:
        config["stopSequences"] = stops
    if (fmt := chat.response_format) is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.json_schema is not None and fmt.json_schema.schema_ is not None:
            config["responseJsonSchema"] = fmt.json_schema.schema_
    return config


def _calling_config(chat: ChatView) -> dict[str, Any]:
    choice = chat.tool_choice
    if isinstance(choice, str):
        return {"mode": _TOOL_MODES[choice]}
    assert choice is not None
    return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}


def _contents(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system parts, contents)``: system text hoisted, same-role turns merged in order."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, from earlier assistant turns
    for i, message in enumerate(messages):
        param = f"messages[{i}].content"
        match message.role:
            case "system" | "developer":
                system.extend(_text_parts(message.content, param))
                continue
            case "user":
                role, parts = "user", _user_parts(message.content, param)
            case "assistant":
                role, parts = "model", _text_parts(message.content, param)
                for call in message.tool_calls or ():
                    names[call.id] = call.function.name
                    parts.append(_function_call(call))
            case "tool":
                role, parts = "user", [_function_response(message, names, i)]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _text_parts(content: str | list[ContentPart] | None, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    return [{"text": text} for part in content if (text := text_of([part], param=param))]


def _user_parts(content: str | list[ContentPart] | None, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_parts(content, param)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "image_url" and part.image_url is not None:
            parts.append(_image_part(part.image_url.url))
        else:
            parts.extend(_text_parts([part], param))
    return parts


def _image_part(url: str) -> dict[str, Any]:
    if (inline := data_url(url)) is not None:
        media_type, data = inline
        return {"inlineData": {"mimeType": media_type, "data": data}}
    media_type = mimetypes.guess_type(url)[0] or "image/jpeg"
    return {"fileData": {"mimeType": media_type, "fileUri": url}}


def _function_call(call: ToolCall) -> dict[str, Any]:
    part: dict[str, Any] = {
        "functionCall": {"name": call.function.name, "args": arguments_of(call)}
    }
    google = (call.extra_content or {}).get("google")
    if isinstance(google, dict) and isinstance(sig := google.get("thought_signature"), str):
        part["thoughtSignature"] = sig
    return part


def _function_response(message: ChatMessage, names: dict[str, str], i: int) -> dict[str, Any]:
    name = names.get(message.tool_call_id or "")
    if name is None:
        raise InvalidRequest(
            "A tool message must answer a tool call of an earlier assistant message",
            param=f"messages[{i}].tool_call_id",
        )
    text = text_of(message.content, param=f"messages[{i}].content")
    try:
        result = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = None
    # Gemini wants an object; a tool's plain-text (or non-object JSON) answer is wrapped.
    response = result if isinstance(result, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


# -- answer --------------------------------------------------------------------


def _finish_reason(reason: str | None, *, called: bool) -> str | None:
    if reason is None:
        return None
    mapped = _FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def _parse(content: bytes, provider: str) -> GenerateContentResponse:
    try:
        return GenerateContentResponse.model_validate_json(content)
    except ValidationError:
        raise ProviderUnavailable(
            f"Provider `{provider}` sent a body that is not a GenerateContentResponse"
        ) from None


def from_provider(content: bytes, provider: str, *, created: int) -> Completion:
    """A GenerateContentResponse as a ``chat.completion`` body (stamped ``created``)."""
    answer = _parse(content, provider)
    choices = [
        choice_json(
            index=candidate.index,
            text=candidate.text,
            tool_calls=[part.tool_call(n) for n, part in enumerate(candidate.calls)],
            finish_reason=_finish_reason(candidate.finish_reason, called=bool(candidate.calls))
            or "stop",
        )
        for candidate in answer.candidates
    ]
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append(choice_json(index=0, text="", tool_calls=[], finish_reason="content_filter"))
    usage = answer.usage_metadata.to_usage() if answer.usage_metadata else None
    body = completion_json(
        id=answer.response_id,
        created=created,
        model=answer.model_version,
        choices=choices,
        usage=usage,
    )
    return Completion(body=body, usage=usage)


class StreamTranslator:
    """Turns the events of one Gemini stream into chat.completion chunks, in order.

    Every event is a partial GenerateContentResponse: ``feed`` returns the
    chunks of each candidate it carries, in OpenAI's order (``_candidate``): a
    candidate's first text comes after a role chunk of its own (a first tool
    call carries the role itself, content null), text and tool calls of one
    event share a chunk, and a finish reason comes in a chunk of its own with
    an empty delta, as OpenAI sends it. Gemini has no end event: ``finish`` is
    called at the end of the body and returns the usage-only chunk from the
    last ``usageMetadata``, or raises ``ProviderUnavailable`` if no candidate
    ever finished (a cut stream). An event carrying ``error`` raises
    ``ProviderUnavailable``.
    """

    __slots__ = (
        "_created",
        "_finished",
        "_forward_usage",
        "_provider",
        "_tools",
        "_usage",
        "_writer",
    )

    def __init__(self, provider: str, *, forward_usage: bool, created: int) -> None:
        self._provider = provider
        self._forward_usage = forward_usage
        self._created = created
        self._writer: ChunkWriter | None = None
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._finished = False
        self._usage: Usage | None = None

    def feed(self, sse: ServerSentEvent) -> list[StreamChunk]:
        """The chunks for one server-sent event (see the class docstring)."""
        event = _parse(sse.data, self._provider)
        if event.error is not None:
            raise ProviderUnavailable(
                f"Provider `{self._provider}` failed mid-stream: {event.error.message}"
            )
        if self._writer is None:
            self._writer = ChunkWriter(
                id=event.response_id,
                created=self._created,
                model=event.model_version,
                forward_usage=self._forward_usage,
            )
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata.to_usage()
        if not event.candidates and event.prompt_feedback and event.prompt_feedback.block_reason:
            self._finished = True
            return [
                self._writer.delta({"role": "assistant", "content": ""}),
                self._writer.delta({}, finish_reason="content_filter"),
            ]
        return [
            chunk
            for candidate in event.candidates
            for chunk in self._candidate(self._writer, candidate)
        ]

    def finish(self) -> StreamChunk | None:
        """The usage-only chunk at the end of the body (``None`` if Gemini reported no usage)."""
        if not self._finished or self._writer is None:
            raise ProviderUnavailable(
                f"Provider `{self._provider}` ended the stream before a finish reason"
            )
        return self._writer.usage(self._usage) if self._usage is not None else None

    def _candidate(self, writer: ChunkWriter, candidate: Candidate) -> list[StreamChunk]:
        index = candidate.index
        chunks: list[StreamChunk] = []
        delta: dict[str, Any] = {}
        text, calls = candidate.text, candidate.calls
        if index not in self._tools:
            self._tools[index] = 0
            if text or not calls:
                chunks.append(writer.delta({"role": "assistant", "content": ""}, index=index))
            else:
                delta = {"role": "assistant", "content": None}
        if text:
            delta["content"] = text
        if calls:
            first = self._tools[index]
            delta["tool_calls"] = [
                {"index": n, **part.tool_call(n)} for n, part in enumerate(calls, start=first)
            ]
            self._tools[index] = first + len(calls)
        if delta:  # none: e.g. only a thought summary, nothing the client sees
            chunks.append(writer.delta(delta, index=index))
        finish = _finish_reason(candidate.finish_reason, called=self._tools[index] > 0)
        if finish is not None:
            self._finished = True
            chunks.append(writer.delta({}, index=index, finish_reason=finish))
        return chunks


def _map_error(response: httpx.Response, provider: str) -> GatewayError:
    """Our error for a non-2xx answer (body read); a 429's RetryInfo delay is honoured."""
    try:
        envelope: ErrorEnvelope | None = ErrorEnvelope.model_validate_json(response.content)
    except ValidationError:
        envelope = None
    return status_error(
        response,
        provider,
        envelope.error.message if envelope else None,
        retry_after_s=envelope.retry_delay() if envelope else None,
    )


# -- the adapter ---------------------------------------------------------------


class GeminiAdapter:
    """``ProviderAdapter`` for the Gemini API over one pooled ``ProviderClient``.

    The client carries the base URL (``.../v1beta``) and the configured
    ``x-goog-api-key``; a caller's own key replaces it per call.
    """

    def __init__(self, name: str, client: ProviderClient) -> None:
        self._name = name
        self._client = client

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"GeminiAdapter({self._name!r}, {self._client.base_url})"

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        request = self._request(req, "generateContent", to_provider(req), deadline)
        response = await send(self._client, request, self._map)
        return from_provider(response.content, self._name, created=int(time.time()))

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        chat = read_chat(req)
        request = self._request(req, "streamGenerateContent", _payload(chat), deadline, sse=True)
        translator = StreamTranslator(
            self._name, forward_usage=chat.wants_usage, created=int(time.time())
        )
        # The request is handed over, not kept: sse_events drops its body once sent.
        events = sse_events(self._client, request, self._map)
        del request
        async with contextlib.aclosing(events):
            async for event in events:
                for chunk in translator.feed(event):
                    yield chunk
        if (last := translator.finish()) is not None:
            yield last

    async def list_models(self) -> tuple[str, ...]:
        """The first page of ``GET /models`` (up to 1000), without the ``models/`` prefix."""
        names = await list_names(
            self._client,
            "models",
            self._map,
            self._name,
            items="models",
            key="name",
            params={"pageSize": 1000},
        )
        return tuple(name.removeprefix("models/") for name in names)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _map(self, response: httpx.Response) -> GatewayError:
        return _map_error(response, self._name)

    def _request(
        self,
        req: ProviderRequest,
        method: str,
        payload: bytes,
        deadline: float | None,
        *,
        sse: bool = False,
    ) -> httpx.Request:
        model = quote(req.provider_model.removeprefix("models/"), safe="")
        return self._client.request(
            "POST",
            f"models/{model}:{method}",
            params={"alt": "sse"} if sse else None,
            content=payload,
            headers={"x-goog-api-key": req.provider_key} if req.provider_key else None,
            deadline=deadline,
        )


def build(
    name: str,
    entry: ProviderEntry,
    api_key: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GeminiAdapter:
    """Adapter factory for kind ``gemini`` (``base_url`` like https://generativelanguage.googleapis.com/v1beta)."""
    headers = {"x-goog-api-key": api_key} if api_key else {}
    return GeminiAdapter(name, new_client(entry, headers, transport=transport))
