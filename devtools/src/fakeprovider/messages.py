"""The fake's Anthropic Messages mode: deterministic answers to ``POST /v1/messages``.

As deterministic as the OpenAI mode (``replies``), decided from the body alone
except for prompt caching, which remembers what it has seen (as a real cache)::

    tools + tool_choice {"type": "any"}           one tool_use per tool (only the first
                                                  with disable_parallel_tool_use)
    tools + tool_choice {"type": "tool", name}    one tool_use of that tool
    otherwise                                     text f"{last_user_text} [{digest}]"
    thinking {"type": "enabled"}                  a thinking block first:
                                                  f"Thinking about: {last_user_text}"
    a stop sequence inside the text               text cut before it, stop_reason
                                                  stop_sequence, stop_sequence set
    last user text contains "[stream-error]"      streams: an ``error`` event
                                                  (overloaded_error) after the first delta

``digest`` is ``replies.digest`` of the Messages body. A tool_use has id
``toolu_<digest>_<i>`` and input ``{"text": last_user_text}``; streamed, its JSON
arrives in ``ARGUMENT_DELTA_CHARS``-character ``input_json_delta`` pieces.

Tokens are words. ``cache_control`` marks a breakpoint: the words of the
prompt up to the last breakpoint (system, tools, then messages, in order) are
the cached prefix - ``cache_creation_input_tokens`` the first time the fake
sees that prefix, ``cache_read_input_tokens`` afterwards - and
``input_tokens`` are the remaining words, as Anthropic counts them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from fakeprovider.answers import ARGUMENT_DELTA_CHARS
from fakeprovider.replies import digest

__all__ = ["STREAM_ERROR_MARKER", "PromptCache", "error_body", "message", "message_events"]

STREAM_ERROR_MARKER = "[stream-error]"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class PromptCache:
    """The prefixes seen so far (by SHA-256), bounded: a real cache forgets too."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: dict[str, None] = {}
        self._size = size

    def hit(self, prefix: bytes) -> bool:
        """Whether ``prefix`` was cached before; remembers it either way."""
        key = hashlib.sha256(prefix).hexdigest()
        if key in self._seen:
            return True
        if len(self._seen) >= self._size:
            self._seen.pop(next(iter(self._seen)))
        self._seen[key] = None
        return False


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    return 0


def _block_words(block: Any) -> int:
    if isinstance(block, str):
        return _words(block)
    if not isinstance(block, dict):
        return 0
    if block.get("type") == "text":
        return _words(block.get("text"))
    if block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block_words(part) for part in content)
        return _words(content)
    if block.get("type") == "tool_use":
        return _words(orjson.dumps(block.get("input")).decode())
    return 0


def _segments(body: dict[str, Any]) -> list[tuple[Any, int]]:
    """The prompt in order as ``(item, words)``: system blocks, tools, message blocks."""
    out: list[tuple[Any, int]] = []
    system = body.get("system")
    if isinstance(system, str):
        out.append((system, _words(system)))
    elif isinstance(system, list):
        out.extend((block, _block_words(block)) for block in system)
    for tool in body.get("tools") or ():
        out.append((tool, 0))
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            out.extend((block, _block_words(block)) for block in content)
        else:
            out.append((content, _words(content)))
    return out


def _usage(body: dict[str, Any], cache: PromptCache, output: int) -> dict[str, int]:
    segments = _segments(body)
    last = -1
    for i, (item, _) in enumerate(segments):
        if isinstance(item, dict) and item.get("cache_control"):
            last = i
    cached = sum(words for _, words in segments[: last + 1])
    total = sum(words for _, words in segments)
    written = read = 0
    if cached:
        prefix = orjson.dumps(
            [item for item, _ in segments[: last + 1]], option=orjson.OPT_SORT_KEYS
        )
        if cache.hit(body.get("model", "").encode() + prefix):
            read = cached
        else:
            written = cached
    return {
        "input_tokens": total - cached,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }


def _last_user(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    b["text"]
                    for b in content
                    if isinstance(b, dict)
                    and b.get("type") == "text"
                    and isinstance(b.get("text"), str)
                )
            return ""
    return ""


def _tools(body: dict[str, Any]) -> list[str]:
    tools = [t["name"] for t in body.get("tools") or () if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return []
    if choice.get("type") == "tool":
        return [choice["name"]] if isinstance(choice.get("name"), str) else []
    if choice.get("type") == "any":
        return tools[:1] if choice.get("disable_parallel_tool_use") else tools
    return []


def _content(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """``(content blocks, stop_reason, stop_sequence)`` of the answer to ``body``."""
    key = digest(body)
    said = _last_user(body)
    blocks: list[dict[str, Any]] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        blocks.append(
            {"type": "thinking", "thinking": f"Thinking about: {said}", "signature": f"sig_{key}"}
        )
    if names := _tools(body):
        blocks.extend(
            {"type": "tool_use", "id": f"toolu_{key}_{i}", "name": name, "input": {"text": said}}
            for i, name in enumerate(names)
        )
        return blocks, "tool_use", None
    text = f"{said} [{key}]"
    for stop in body.get("stop_sequences") or ():
        if isinstance(stop, str) and stop and stop in text:
            blocks.append({"type": "text", "text": text[: text.index(stop)]})
            return blocks, "stop_sequence", stop
    blocks.append({"type": "text", "text": text})
    return blocks, "end_turn", None


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    return sum(_words(b.get("text") or b.get("thinking")) or _block_words(b) for b in blocks)


def message(body: dict[str, Any], cache: PromptCache) -> dict[str, Any]:
    """The non-streaming Message answering ``body``."""
    blocks, stop_reason, stop_sequence = _content(body)
    return {
        "id": f"msg_{digest(body)}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(body, cache, _output_tokens(blocks)),
    }


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": kind, **payload})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def message_events(body: dict[str, Any], cache: PromptCache) -> list[bytes]:
    """The streamed answer to ``body`` as SSE frames, in Anthropic's order."""
    answer = message(body, cache)
    usage = answer["usage"]
    start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    out = [_event("message_start", {"message": start}), _event("ping", {})]
    failing = STREAM_ERROR_MARKER in _last_user(body)
    for index, block in enumerate(answer["content"]):
        if block["type"] == "text":
            head: dict[str, Any] = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [
                {"type": "text_delta", "text": w if i == 0 else " " + w}
                for i, w in enumerate(words)
            ]
        elif block["type"] == "thinking":
            head = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        else:
            head = {**block, "input": {}}
            raw = orjson.dumps(block["input"]).decode()
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[i : i + ARGUMENT_DELTA_CHARS]}
                for i in range(0, len(raw), ARGUMENT_DELTA_CHARS)
            ]
        out.append(_event("content_block_start", {"index": index, "content_block": head}))
        for delta in deltas:
            out.append(_event("content_block_delta", {"index": index, "delta": delta}))
            if failing:
                error = {"type": "overloaded_error", "message": "fake provider: overloaded"}
                out.append(_event("error", {"error": error}))
                return out
        out.append(_event("content_block_stop", {"index": index}))
    delta = {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]}
    out.append(_event("message_delta", {"delta": delta, "usage": usage}))
    out.append(_event("message_stop", {}))
    return out


def error_body(status: int, message_text: str) -> dict[str, Any]:
    """Anthropic's error object for ``status``."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message_text}}
