"""The fake's context windows, enforced as a real provider enforces them.

A chat request whose prompt, plus its ``max_completion_tokens`` / ``max_tokens``
when set, is more tokens than its model's window is answered as OpenAI answers
it: 400, ``invalid_request_error``, param ``messages``, code
``context_length_exceeded``, OpenAI's message with the fake's own count. The
gateway checks windows itself before calling a provider (``edge.context_window``);
this is what catches a prompt the gateway let through, e.g. a catalog entry whose
``context_window`` is wider than the provider's (tests/integration/catalog.yaml).

The fake counts with a simple estimate of its own, not the gateway's: one token per
``CHARS_PER_TOKEN`` (4) characters of each message's text (string content, text
parts, tool calls' names and arguments), rounded up, plus 3 tokens of framing per
message and 3 for the reply. Models not in ``WINDOWS`` are served like
``mock-chat`` (``replies``), so they get its window.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from gateway_common import tokens

__all__ = ["CHARS_PER_TOKEN", "WINDOWS", "overflow", "prompt_tokens", "window_of"]

#: Context window (prompt + completion tokens) per fake model.
WINDOWS: Final[Mapping[str, int]] = MappingProxyType(
    {"mock-chat": 128_000, "mock-reasoning": 200_000, "mock-small-window": 1_000}
)
#: Characters per token of the fake's estimate.
CHARS_PER_TOKEN: Final = 4
_PER_MESSAGE: Final = 3
_PRIMING: Final = 3


def window_of(model: Any) -> int:
    """The window of ``model`` (``mock-chat``'s for any model the table does not name)."""
    return (
        WINDOWS.get(model, WINDOWS["mock-chat"]) if isinstance(model, str) else WINDOWS["mock-chat"]
    )


def _tokens(text: Any) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if isinstance(text, str) else 0


def _content(content: Any) -> int:
    if isinstance(content, list):
        return sum(_tokens(part.get("text")) for part in content if isinstance(part, dict))
    return _tokens(content)


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """The fake's estimate of a chat body's prompt tokens (module docstring)."""
    total = _PRIMING
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        total += _PER_MESSAGE + _tokens(message.get("role")) + _content(message.get("content"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += _tokens(function.get("name")) + _tokens(function.get("arguments"))
    return total


def overflow(body: Mapping[str, Any]) -> str | None:
    """OpenAI's message refusing ``body`` for its model's window, or None when it fits."""
    window = window_of(body.get("model"))
    prompt = prompt_tokens(body)
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else 0
    return tokens.overflow_message(window, prompt, completion)
