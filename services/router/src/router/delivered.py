"""The usage of a stream cut before its provider reported any: what was delivered, estimated.

A provider reports a stream's usage in its last chunk. A stream that breaks
after k chunks (a reset, a stalled read past its timeout) never gets there,
yet the client received those k chunks and the provider did the work, so the
call is billed for what was delivered (issue 19, drill d09), with status
``error``: the prompt by the request body and the completion by the text of
the chunks that went out, both with ``gateway_common.tokens.estimate`` (one
token per 6 characters, deliberately low, so a cut stream is never billed
above what a complete one would have been).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from gateway_common.tokens import estimate, prompt_tokens

from .providers.base import Operation, Usage

__all__ = ["delivered_usage"]


def delivered_usage(
    operation: Operation, body: Mapping[str, Any], chunks: Iterable[bytes]
) -> Usage:
    """The estimated usage of a call whose ``chunks`` (OpenAI chat chunk JSON) were delivered."""
    kind: Literal["chat.completions", "responses"] = (
        "responses" if operation == "responses" else "chat.completions"
    )
    prompt = prompt_tokens(kind, body, estimate)
    completion = sum(estimate(text) for chunk in chunks for text in _texts(chunk))
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _texts(chunk: bytes) -> Iterable[str]:
    """The generated text of one chat chunk: content, refusal, reasoning, tool call arguments."""
    try:
        data = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return
    choices = data.get("choices") if isinstance(data, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for key in ("content", "refusal", "reasoning_content", "reasoning"):
            if isinstance(value := delta.get(key), str):
                yield value
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(value := function.get(key), str):
                        yield value
