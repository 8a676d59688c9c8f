"""The Responses API served over chat completions, for every provider.

The router serves ``/v1/responses`` by translation, so any chat-capable
provider can answer it and a chain survives failover to another provider::

    Responses request  --to_chat_request-->  chat completions request  --adapter-->  provider
    Response object    <--to_response------  chat completion
    Responses events   <--ResponseEvents---  chat chunks      (responses_stream.py)

The request is self-contained: the edge has already put the stored chain
(earlier inputs and outputs) in front of the new input, so
``previous_response_id`` is only echoed, never resolved here, and
``instructions`` are this request's alone. Only models whose catalog
capabilities include ``responses`` accept the operation (``require_support``).

Mapping of the request (everything not named passes through unchanged, so a
new sampling parameter still reaches the provider):

    instructions            first message, role system
    input (string)          one user message
    message items           messages; input_text -> text part, input_image -> image_url part,
                            input_file -> file part; assistant text is joined into a string
    function_call items     assistant tool_calls (consecutive calls share one message)
    function_call_output    role tool message
    reasoning items         dropped (chat completions cannot take them back)
    max_output_tokens       max_completion_tokens
    tools (type function)   {"type": "function", "function": {name, description, parameters,
                            strict}}
    tool_choice             {"type": "function", "name": N}
                            -> {"type": "function", "function": {"name": N}}
    text.format             response_format (json_object, json_schema); text.verbosity -> verbosity
    reasoning.effort        reasoning_effort
    top_logprobs            logprobs + top_logprobs
    store, metadata, previous_response_id, include, truncation, stream_options,
    max_tool_calls          gateway-side only: not sent
    background, conversation, prompt, non-function tools, other item kinds
                            refused with 400 (this gateway cannot serve them)
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from gateway_common import tokens
from gateway_common.errors import ContextLengthExceeded, InvalidRequest, ProviderUnavailable
from gateway_common.openai import (
    FunctionToolCall,
    OutputMessage,
    OutputRefusal,
    OutputText,
    Response,
    ResponseUsage,
)

from .providers.base import Completion, Usage
from .routing import Route

__all__ = [
    "IdFactory",
    "as_responses_errors",
    "new_id",
    "require_support",
    "response_object",
    "response_usage",
    "to_chat_request",
    "to_completion",
    "to_response",
]

#: Makes an item id from its prefix (``resp``, ``msg``, ``fc``); replaceable in tests.
IdFactory = Callable[[str], str]

#: Responses fields the gateway acts on itself (or maps below); never sent as they are.
_NOT_SENT = frozenset(
    {
        "input",
        "instructions",
        "previous_response_id",
        "store",
        "metadata",
        "include",
        "truncation",
        "stream_options",
        "max_tool_calls",
        "max_output_tokens",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "top_logprobs",
        "background",
        "conversation",
        "prompt",
    }
)
_UNSERVABLE = {
    "background": "Background responses are not supported by this gateway.",
    "conversation": "Conversations are not supported by this gateway; use previous_response_id.",
    "prompt": "Prompt templates are not supported by this gateway.",
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """``<prefix>_<32 hex digits>``, as OpenAI shapes its ids."""
    return f"{prefix}_{uuid.uuid4().hex}"


def require_support(route: Route, model: str) -> Route:
    """``route`` if its model has the ``responses`` capability; else ``InvalidRequest`` (400)."""
    if "responses" not in route.entry.capabilities:
        raise InvalidRequest(
            f"The model `{model}` does not support the Responses API.",
            param="model",
            code="unsupported_model",
        )
    return route


@contextlib.contextmanager
def as_responses_errors() -> Iterator[None]:
    """Re-raise a provider's chat-shaped refusal as the Responses API words it: a
    ``ContextLengthExceeded`` names ``input`` with OpenAI's Responses message."""
    try:
        yield
    except ContextLengthExceeded as err:
        raise ContextLengthExceeded(tokens.RESPONSES_OVERFLOW, param="input") from err


# -- request: Responses -> chat completions -------------------------------------------------


def to_chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat completions request that asks the same of the model (see module docstring).

    Raises ``InvalidRequest`` for what chat completions cannot express.
    """
    for field, message in _UNSERVABLE.items():
        if body.get(field):
            raise InvalidRequest(message, param=field, code="unsupported_parameter")
    chat = {key: value for key, value in body.items() if key not in _NOT_SENT}
    chat["messages"] = _messages(body)
    if (limit := body.get("max_output_tokens")) is not None:
        chat["max_completion_tokens"] = limit
    if tools := body.get("tools"):
        chat["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
    if (choice := body.get("tool_choice")) is not None:
        chat["tool_choice"] = _tool_choice(choice)
    text = body.get("text")
    if isinstance(text, dict):
        if (response_format := _response_format(text.get("format"))) is not None:
            chat["response_format"] = response_format
        if (verbosity := text.get("verbosity")) is not None:
            chat["verbosity"] = verbosity
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    if (top := body.get("top_logprobs")) is not None:
        chat["logprobs"] = True
        chat["top_logprobs"] = top
    return chat


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if instructions := body.get("instructions"):
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    for index, item in enumerate(items or ()):
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, index))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            content = output if isinstance(output, str) else _joined_text(output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        elif kind != "reasoning":
            raise InvalidRequest(
                f"Input items of type '{kind}' are not supported by this gateway.",
                param=f"input[{index}]",
                code="unsupported_input_item",
            )
    if not messages:
        raise InvalidRequest("The request has no input for the model.", param="input")
    return messages


def _message(item: Mapping[str, Any], index: int) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "assistant":
        message: dict[str, Any] = {"role": role, "content": _joined_text(content) or None}
        refusals = [p["refusal"] for p in content if p.get("type") == "refusal"]
        if refusals:
            message["refusal"] = "".join(refusals)
        return message
    parts = [_part(part, f"input[{index}].content[{n}]") for n, part in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": role, "content": parts[0]["text"]}
    return {"role": role, "content": parts}


def _joined_text(parts: list[Mapping[str, Any]]) -> str:
    return "".join(
        p.get("text") or "" for p in parts if p.get("type") in ("input_text", "output_text")
    )


def _part(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "input_image" and part.get("image_url"):
        image = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        fields = ("file_id", "file_data", "filename")
        return {"type": "file", "file": {k: part[k] for k in fields if part.get(k) is not None}}
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        return {"type": "input_audio", "input_audio": part["input_audio"]}
    raise InvalidRequest(
        f"Content parts of type '{kind}' are not supported by this gateway.",
        param=param,
        code="unsupported_content_part",
    )


def _tool(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("name"):
        kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
        raise InvalidRequest(
            f"Tools of type '{kind}' are not supported by this gateway; only function tools are.",
            param=f"tools[{index}]",
            code="unsupported_tool",
        )
    fields = ("name", "description", "parameters", "strict")
    return {"type": "function", "function": {k: tool[k] for k in fields if k in tool}}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        "Only 'auto', 'none', 'required' and function tool choices are supported.",
        param="tool_choice",
        code="unsupported_tool_choice",
    )


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_schema":
        fields = ("name", "description", "schema", "strict")
        return {"type": "json_schema", "json_schema": {k: fmt[k] for k in fields if k in fmt}}
    return {"type": fmt["type"]}


# -- answer: chat completion -> Response ------------------------------------------------------


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    """Chat usage in the Responses API's names."""
    if usage is None:
        return None
    return ResponseUsage.model_validate(
        {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        }
    )


def response_object(
    request: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[Any],
    usage: Usage | None = None,
    finish_reason: str | None = None,
) -> Response:
    """The Response object for ``request``: status, output and usage, plus the echoed parameters."""
    reason = _INCOMPLETE.get(finish_reason or "")
    if reason is not None and status == "completed":
        status = "incomplete"
    return Response.model_validate(
        {
            "id": response_id,
            "object": "response",
            "created_at": created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
            "store": request.get("store", True),
            "temperature": request.get("temperature"),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [],
            "top_p": request.get("top_p"),
            "truncation": request.get("truncation", "disabled"),
            "usage": response_usage(usage),
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
        }
    )


def to_response(
    chat: Mapping[str, Any],
    request: Mapping[str, Any],
    usage: Usage | None,
    *,
    response_id: str,
    created_at: int,
    ids: IdFactory = new_id,
) -> Response:
    """The Response object for a finished chat completion of ``request``.

    Raises ``ProviderUnavailable`` when the completion has no choice to read.
    """
    choices = chat.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderUnavailable("The provider answered a chat completion without choices")
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[OutputText | OutputRefusal] = []
    if text := message.get("content"):
        content.append(OutputText(text=text))
    if refusal := message.get("refusal"):
        content.append(OutputRefusal(refusal=refusal))
    output: list[Any] = [OutputMessage(id=ids("msg"), content=content)] if content else []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(
            FunctionToolCall(
                id=ids("fc"),
                call_id=call.get("id") or ids("call"),
                name=function.get("name") or "",
                arguments=function.get("arguments") or "",
            )
        )
    return response_object(
        request,
        response_id=response_id,
        created_at=created_at,
        model=chat.get("model") or request["model"],
        status="completed",
        output=output,
        usage=usage,
        finish_reason=choice.get("finish_reason"),
    )


def to_completion(completion: Completion, request: Mapping[str, Any]) -> Completion:
    """The unary answer to a Responses call, from the provider's chat completion."""
    try:
        chat = orjson.loads(completion.body)
    except orjson.JSONDecodeError:
        chat = None
    if not isinstance(chat, dict):
        raise ProviderUnavailable("The provider's chat completion is not a JSON object")
    response = to_response(
        chat,
        request,
        completion.usage,
        response_id=new_id("resp"),
        created_at=int(time.time()),
    )
    return Completion(body=orjson.dumps(response.model_dump(mode="json")), usage=completion.usage)
