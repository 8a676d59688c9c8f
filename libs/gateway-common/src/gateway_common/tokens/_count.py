"""Prompt tokens of a chat completions or Responses request body, and OpenAI's refusal of it.

What is counted (OpenAI cookbook, "How to count tokens with tiktoken", for
its chat models; the same rules for every model so the limits agree):

    every message          3 tokens of chat framing, plus its ``role``, ``name``
                           (and 1 more for having one), ``content``, ``refusal``
    content                a string, or its parts: ``text`` / ``input_text`` /
                           ``output_text`` / ``refusal`` by their text, each image
                           part (``image_url``, ``input_image``) ``IMAGE_TOKENS``,
                           audio and file parts nothing (their bytes are not text
                           and their cost is the provider's to know)
    tool calls             each call's function name and arguments
    tools (definitions)    the compact JSON of each definition (an estimate: OpenAI
                           renders them more tersely, so this is on the high side
                           for tools and low elsewhere)
    the reply              3 tokens of priming
    Responses              ``instructions`` as a system message; ``input`` as one user
                           message or its items: messages as above, function calls
                           by name and arguments, their outputs by text, reasoning
                           items nothing (the gateway serves Responses over chat
                           completions, which drop them), any other item by its JSON

A text is counted by a ``TextCount``: an encoding's exact count, or
``estimate`` where a model's tokenizer is unknown.

**The estimate** is one token per ``ESTIMATE_CHARS_PER_TOKEN`` (6) characters
(code points), rounded up per text. It is deliberately low: ordinary text in
the tokenizers we measured takes 3.5 to 4.8 characters a token (English prose
and code ~3.8-4.7 with o200k_base, Russian ~4.4, German ~4.3, Chinese ~1.5,
JSON ~2.1; Claude's and Llama's tokenizers take fewer characters a token, not
more), so the estimate never exceeds the real count of such text, and a
request the provider would accept is never refused for it. What it lets
through near the limit the provider refuses itself, which the router maps to
the same 400. Characters, not bytes: a Cyrillic letter is two bytes of UTF-8
and a Chinese one three, yet each is about as much of a token as a Latin one.

**The byte bound** (``fits_for_sure``): every counted token costs at least one
byte of the JSON body (a BPE token is at least one byte of UTF-8 text, the
estimate counts fewer tokens than characters, JSON escapes only lengthen text,
and each message's framing ``{"role":"","content":""}`` is longer than the 3
tokens it adds), except images, counted at ``IMAGE_TOKENS`` each whatever their
size. Each image part spells ``image`` at least once, so a body of ``B`` bytes
with ``k`` occurrences of ``image`` counts at most ``B + k * IMAGE_TOKENS``
tokens: when that is within the limit it fits without being parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

import orjson

__all__ = [
    "CONTEXT_LENGTH_EXCEEDED",
    "ESTIMATE_CHARS_PER_TOKEN",
    "IMAGE_TOKENS",
    "RESPONSES_OVERFLOW",
    "TOKENS_PER_MESSAGE",
    "TextCount",
    "chat_prompt_tokens",
    "estimate",
    "fits_for_sure",
    "overflow_message",
    "prompt_tokens",
    "responses_prompt_tokens",
]

#: Counts the tokens of one text.
TextCount = Callable[[str], int]

#: Chat framing per message (``<|start|>{role}\n{content}<|end|>\n``).
TOKENS_PER_MESSAGE: Final = 3
#: Added by a message's ``name``, besides the name's own tokens.
TOKENS_PER_NAME: Final = 1
#: Every reply is primed with ``<|start|>assistant<|message|>``.
REPLY_PRIMING: Final = 3
#: One image, whatever its size: OpenAI's low-detail cost, the least any provider
#: charges for an image (high detail and other providers charge more).
IMAGE_TOKENS: Final = 85
#: The estimate's characters per token (see the module docstring).
ESTIMATE_CHARS_PER_TOKEN: Final = 6
#: OpenAI's error code for a prompt over the context window.
CONTEXT_LENGTH_EXCEEDED: Final = "context_length_exceeded"
#: OpenAI's message for it on the Responses API (param ``input``; it states no numbers).
RESPONSES_OVERFLOW: Final = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)

_IMAGE: Final = b"image"
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_IMAGE_PARTS = frozenset({"image_url", "input_image"})
_OPAQUE_PARTS = frozenset({"input_audio", "file", "input_file", "audio"})


def estimate(text: str) -> int:
    """The estimated tokens of ``text`` where the tokenizer is unknown (module docstring)."""
    return -(-len(text) // ESTIMATE_CHARS_PER_TOKEN)


def fits_for_sure(body: bytes, limit: int) -> bool:
    """Whether ``body`` counts at most ``limit`` tokens by the byte bound alone (no parsing).

    False means only "count it"; it is a few memory scans of ``body``.
    """
    if len(body) > limit:
        return False
    return len(body) + IMAGE_TOKENS * body.count(_IMAGE) <= limit


def overflow_message(window: int, prompt: int, completion: int) -> str | None:
    """OpenAI's chat completions message when ``prompt`` tokens plus an explicit ``completion``
    (max tokens; 0 when unset) exceed ``window``; None when they fit."""
    if prompt > window:
        return (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt} tokens. Please reduce the length of the messages."
        )
    if prompt + completion > window:
        return (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    return None


def _json(value: Any, count: TextCount) -> int:
    return count(orjson.dumps(value).decode())


def _part(part: Any, count: TextCount) -> int:
    if isinstance(part, str):
        return count(part)
    if not isinstance(part, Mapping):
        return 0
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        text = part.get("text")
        return count(text) if isinstance(text, str) else 0
    if kind == "refusal":
        text = part.get("refusal")
        return count(text) if isinstance(text, str) else 0
    if kind in _IMAGE_PARTS:
        return IMAGE_TOKENS
    if kind in _OPAQUE_PARTS:
        return 0
    return _json(part, count)


def _content(content: Any, count: TextCount) -> int:
    if isinstance(content, str):
        return count(content)
    if isinstance(content, Sequence):
        return sum(_part(part, count) for part in content)
    return 0


def _call(name: Any, arguments: Any, count: TextCount) -> int:
    tokens = count(name) if isinstance(name, str) else 0
    if isinstance(arguments, str):
        tokens += count(arguments)
    elif arguments is not None:
        tokens += _json(arguments, count)
    return tokens


def _message(message: Mapping[str, Any], count: TextCount) -> int:
    tokens = TOKENS_PER_MESSAGE
    for key in ("role", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            tokens += count(value)
    name = message.get("name")
    if isinstance(name, str):
        tokens += count(name) + TOKENS_PER_NAME
    tokens += _content(message.get("content"), count)
    calls = message.get("tool_calls")
    if isinstance(calls, Sequence):
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                tokens += _call(function.get("name"), function.get("arguments"), count)
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping):
        tokens += _call(legacy.get("name"), legacy.get("arguments"), count)
    return tokens


def _definitions(body: Mapping[str, Any], count: TextCount, *keys: str) -> int:
    tokens = 0
    for key in keys:
        listed = body.get(key)
        if isinstance(listed, Sequence) and not isinstance(listed, str):
            tokens += sum(_json(item, count) for item in listed)
    return tokens


def chat_prompt_tokens(body: Mapping[str, Any], count: TextCount) -> int:
    """The prompt tokens of a chat completions request body (its JSON object).

    Never raises for a strange shape: what it cannot read counts nothing.
    """
    tokens = REPLY_PRIMING
    messages = body.get("messages")
    if isinstance(messages, Sequence):
        for message in messages:
            if isinstance(message, Mapping):
                tokens += _message(message, count)
    return tokens + _definitions(body, count, "tools", "functions")


def _item(item: Any, count: TextCount) -> int:
    if isinstance(item, str):
        return TOKENS_PER_MESSAGE + count(item)
    if not isinstance(item, Mapping):
        return 0
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, count)
    if kind == "function_call":
        return TOKENS_PER_MESSAGE + _call(item.get("name"), item.get("arguments"), count)
    if kind == "function_call_output":
        return TOKENS_PER_MESSAGE + _content(item.get("output"), count)
    if kind == "reasoning":
        return 0
    return _json(item, count)  # its braces and keys stand in for the framing


def responses_prompt_tokens(body: Mapping[str, Any], count: TextCount) -> int:
    """The prompt tokens of a Responses request body (its JSON object), history included
    when the gateway has expanded ``previous_response_id`` into ``input``."""
    tokens = REPLY_PRIMING
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        tokens += TOKENS_PER_MESSAGE + count("system") + count(instructions)
    given = body.get("input")
    if isinstance(given, str):
        tokens += TOKENS_PER_MESSAGE + count("user") + count(given)
    elif isinstance(given, Sequence):
        tokens += sum(_item(item, count) for item in given)
    return tokens + _definitions(body, count, "tools")


def prompt_tokens(
    operation: Literal["chat.completions", "responses"],
    body: Mapping[str, Any],
    count: TextCount,
) -> int:
    """``chat_prompt_tokens`` or ``responses_prompt_tokens``, by ``operation``."""
    if operation == "responses":
        return responses_prompt_tokens(body, count)
    return chat_prompt_tokens(body, count)
