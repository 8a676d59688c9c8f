"""A Messages request as the OpenAI chat request the router routes (the inbound direction).

The router speaks OpenAI chat completions to every adapter, so a Messages
request is translated once here and then goes wherever ``/v1/chat/completions``
would go (budgets, ledger, failover: ``Proxy.forward``):

    system (string | text blocks)   one system message
    user text / image / document    a user message of content parts: text, image_url
                                    (base64 as a data URL, or the URL), documents as a
                                    ``file`` part (base64 PDF) or text parts (plain text,
                                    content blocks; a title/context becomes a text part)
    user tool_result blocks         one ``tool`` message each, before the turn's other
                                    content (OpenAI wants them right after the calls);
                                    images in a result follow as a user message
    assistant text / tool_use       ``content`` and ``tool_calls`` (input as JSON)
    assistant thinking              dropped: no chat provider reads another model's thinking
                                    (kept as ``thinking_blocks`` when ``native``)
    thinking (not ``native``)       reasoning_effort, for a model with the ``reasoning``
                                    capability (``reasoning_effort``: budget_tokens below
                                    4096 -> low, below 16384 -> medium, else high; enabled
                                    without a budget -> medium); dropped for other models
    max_tokens                      max_completion_tokens
    stop_sequences                  stop
    metadata.user_id                user
    tools (client tools)            function tools; a server tool (web search, ...) is a 400
    tool_choice                     auto / required (any) / named function / none;
                                    disable_parallel_tool_use -> parallel_tool_calls: false
    stream                          stream, with stream_options.include_usage (usage
                                    is needed for message_delta and billing)

``native`` (every deployment the model may route to speaks Messages): the
Anthropic-only parts ride as extension fields the router's Anthropic adapter
reads back - ``cache_control`` on content parts, system parts and tools,
top-level ``top_k``, ``thinking`` and ``cache_control``, earlier turns'
``thinking_blocks`` - so prompt caching, thinking and sampling survive
the trip. Without it they are dropped: an OpenAI-compatible provider would
refuse an unknown field, and a cache breakpoint changes nothing in the answer.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway_common.errors import InvalidRequest

from ._wire import (
    Base64Source,
    ContentSource,
    CountTokensRequest,
    DocumentBlock,
    FileSource,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    TextSource,
    Thinking,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
)

__all__ = ["reasoning_effort", "to_chat"]

_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


#: One ``anthropic-beta`` feature name (the header is a comma-separated list of them).
_BETA = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: An ``anthropic-version`` value (a date); the router decides whether it supports it.
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


#: ``budget_tokens`` below each bound -> that effort; at or above the last bound: high.
_EFFORT_BOUNDS: tuple[tuple[int, str], ...] = ((4096, "low"), (16384, "medium"))


def reasoning_effort(thinking: Thinking) -> str | None:
    """OpenAI's ``reasoning_effort`` for Anthropic's ``thinking`` (None: thinking disabled).

    The rule is by ``budget_tokens``: below 4096 (Anthropic's minimum is 1024) ``low``,
    below 16384 ``medium``, else ``high``; enabled without a budget is ``medium``.
    """
    if thinking.type != "enabled":
        return None
    if thinking.budget_tokens is None:
        return "medium"
    for bound, effort in _EFFORT_BOUNDS:
        if thinking.budget_tokens < bound:
            return effort
    return "high"


def to_chat(
    req: MessagesRequest | CountTokensRequest,
    *,
    native: bool,
    beta: str | None = None,
    version: str | None = None,
    reasoning: bool = False,
) -> dict[str, Any]:
    """The OpenAI chat request body for ``req`` (``InvalidRequest`` if it cannot be expressed).

    ``beta`` is the request's ``anthropic-beta`` header: when ``native`` its features ride
    as ``anthropic_beta`` and the router's Anthropic adapter sends them on as the header.
    ``version`` is the request's ``anthropic-version``: when ``native`` and shaped as a date
    it rides as ``anthropic_version``; the adapter sends it on if it is one the router
    supports, its own version otherwise (``router.providers.anthropic.version_header``).
    ``reasoning``: the model takes ``reasoning_effort``, which then carries a non-native
    request's ``thinking`` (``reasoning_effort()``).
    """
    body = _Translation(native, reasoning).request(req)
    if native and beta:
        features = [part.strip() for part in beta.split(",") if part.strip()]
        if not all(_BETA.fullmatch(f) for f in features):
            raise InvalidRequest("anthropic-beta: expected comma-separated feature names")
        body["anthropic_beta"] = features
    if native and version and _VERSION.fullmatch(version.strip()):
        body["anthropic_version"] = version.strip()
    return body


class _Translation:
    """One request's translation; ``native`` says whether Anthropic extensions are kept."""

    def __init__(self, native: bool, reasoning: bool = False) -> None:
        self.native = native
        self.reasoning = reasoning

    def request(self, req: MessagesRequest | CountTokensRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model, "messages": self.messages(req)}
        if req.tools:
            body["tools"] = [self.tool(i, tool) for i, tool in enumerate(req.tools)]
        if req.tool_choice is not None and req.tools:
            choice = req.tool_choice
            if choice.type == "tool":
                if not choice.name:
                    raise InvalidRequest(
                        "tool_choice.name: Field required", param="tool_choice.name"
                    )
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                body["tool_choice"] = _CHOICES[choice.type]
            if choice.disable_parallel_tool_use:
                body["parallel_tool_calls"] = False
        if self.native and req.thinking is not None:
            body["thinking"] = req.thinking.model_dump(exclude_none=True)
        elif (
            self.reasoning
            and req.thinking is not None
            and (effort := reasoning_effort(req.thinking)) is not None
        ):
            body["reasoning_effort"] = effort
        if isinstance(req, MessagesRequest):
            self.sampling(req, body)
        return body

    def sampling(self, req: MessagesRequest, body: dict[str, Any]) -> None:
        body["max_completion_tokens"] = req.max_tokens
        for name in ("temperature", "top_p"):
            if (value := getattr(req, name)) is not None:
                body[name] = value
        if self.native and req.top_k is not None:
            body["top_k"] = req.top_k
        if self.native and req.cache_control is not None:
            body["cache_control"] = req.cache_control.model_dump(exclude_none=True)
        if req.stop_sequences:
            body["stop"] = req.stop_sequences
        if req.metadata is not None and req.metadata.user_id:
            body["user"] = req.metadata.user_id
        if req.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}

    def _cache(self, part: dict[str, Any], block: Any) -> dict[str, Any]:
        if self.native and block.cache_control is not None:
            part["cache_control"] = block.cache_control.model_dump(exclude_none=True)
        return part

    def messages(self, req: MessagesRequest | CountTokensRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(req.system, str) and req.system:
            out.append({"role": "system", "content": req.system})
        elif isinstance(req.system, list) and req.system:
            if self.native:
                parts = [self._cache(self.text(b.text), b) for b in req.system]
                out.append({"role": "system", "content": parts})
            else:
                out.append({"role": "system", "content": "\n\n".join(b.text for b in req.system)})
        for i, message in enumerate(req.messages):
            param = f"messages[{i}].content"
            if isinstance(message.content, str):
                out.append({"role": message.role, "content": message.content})
            elif message.role == "user":
                out.extend(self.user(message.content, param))
            else:
                out.append(self.assistant(message.content, param))
        return out

    def user(self, blocks: list[Any], param: str) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []  # images returned by tools
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            where = f"{param}[{j}]"
            if isinstance(block, ToolResultBlock):
                text, images = self.tool_result(block, where)
                tools.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": text})
                after.extend(images)
            elif isinstance(block, TextBlock):
                parts.append(self._cache(self.text(block.text), block))
            elif isinstance(block, ImageBlock):
                parts.append(self.image(block, where))
            elif isinstance(block, DocumentBlock):
                parts.extend(self.document(block, where))
            else:  # tool_use, thinking in a user turn
                raise InvalidRequest(
                    f"{where}: a '{block.type}' block may only appear in an assistant turn",
                    param=where,
                )
        out = tools
        if after or parts:
            out.append({"role": "user", "content": after + parts})
        return out

    def assistant(self, blocks: list[Any], param: str) -> dict[str, Any]:
        texts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        thinking: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            if isinstance(block, TextBlock):
                texts.append(self._cache(self.text(block.text), block))
            elif isinstance(block, ToolUseBlock):
                arguments = orjson.dumps(block.input).decode()
                call = {"name": block.name, "arguments": arguments}
                calls.append({"id": block.id, "type": "function", "function": call})
            elif block.type in ("thinking", "redacted_thinking"):
                if self.native:  # Anthropic wants them back, signature and all
                    thinking.append(block.model_dump(exclude_none=True))
            else:
                where = f"{param}[{j}]"
                raise InvalidRequest(
                    f"{where}: a '{block.type}' block may not appear in an assistant turn",
                    param=where,
                )
        message: dict[str, Any] = {"role": "assistant"}
        if any("cache_control" in part for part in texts):
            message["content"] = texts
        else:
            text = "".join(part["text"] for part in texts)
            message["content"] = text or (None if calls else "")
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking_blocks"] = thinking
        return message

    @staticmethod
    def text(text: str) -> dict[str, Any]:
        return {"type": "text", "text": text}

    def image(self, block: ImageBlock, where: str) -> dict[str, Any]:
        source = block.source
        if isinstance(source, FileSource):
            raise _no_files(where)
        if isinstance(source, Base64Source):
            url = f"data:{source.media_type};base64,{source.data}"
        else:
            url = source.url
        return self._cache({"type": "image_url", "image_url": {"url": url}}, block)

    def document(self, block: DocumentBlock, where: str) -> list[dict[str, Any]]:
        source = block.source
        head = [self.text(t) for t in (block.title, block.context) if t]
        if isinstance(source, FileSource):
            raise _no_files(where)
        if isinstance(source, URLSource):
            raise InvalidRequest(
                f"{where}: documents by URL are not supported through this gateway; "
                "send the document as base64 or text",
                param=f"{where}.source",
            )
        if isinstance(source, TextSource):
            body = [self.text(source.data)]
        elif isinstance(source, ContentSource):
            if isinstance(source.content, str):
                body = [self.text(source.content)]
            else:
                body = [
                    self.text(b.text) if isinstance(b, TextBlock) else self.image(b, where)
                    for b in source.content
                ]
        else:
            file = {
                "filename": block.title or "document.pdf",
                "file_data": f"data:{source.media_type};base64,{source.data}",
            }
            body = [{"type": "file", "file": file}]
        if body:
            self._cache(body[-1], block)
        return head + body

    def tool_result(self, block: ToolResultBlock, where: str) -> tuple[str, list[dict[str, Any]]]:
        """The result's text, and the image parts it carried (a tool message holds text only)."""
        if block.content is None or isinstance(block.content, str):
            return block.content or "", []
        texts: list[str] = []
        images: list[dict[str, Any]] = []
        for k, part in enumerate(block.content):
            if isinstance(part, TextBlock):
                texts.append(part.text)
            elif isinstance(part, ImageBlock):
                images.append(self.image(part, f"{where}.content[{k}]"))
            else:
                images.extend(self.document(part, f"{where}.content[{k}]"))
        return "\n".join(texts), images

    def tool(self, i: int, tool: Any) -> dict[str, Any]:
        if tool.type not in (None, "custom"):
            raise InvalidRequest(
                f"tools[{i}]: the server tool '{tool.type}' is not supported through this "
                "gateway; define it as a client tool with an input_schema",
                param=f"tools[{i}].type",
            )
        if tool.input_schema is None:
            raise InvalidRequest(
                f"tools[{i}].input_schema: Field required", param=f"tools[{i}].input_schema"
            )
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description:
            function["description"] = tool.description
        return self._cache({"type": "function", "function": function}, tool)


def _no_files(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"{where}: file_id sources need the Files API, which this gateway does not offer",
        param=f"{where}.source",
    )
