"""The usage of a stream cut before its provider reported any: what was delivered, estimated.

A provider reports a stream's usage in its last chunk. A stream that ends
after k chunks without it never gets there, yet the client received those k
chunks and the provider did the work, so the call is billed for what was
delivered: the prompt by the request body and the completion by the text of
the chunks that went out, both with ``gateway_common.tokens.estimate`` (one
token per 6 characters, deliberately low, so a cut stream is never billed
above what a complete one would have been). Two ways to be cut:

* the provider's stream breaks (a reset, a stalled read past its timeout;
  issue 19, drill d09): status ``error``, delivered = the chunks the service
  yielded (the servicer writes every one of them before the error);
* the caller goes away (the edge died, or its client disconnected; drill
  d05): the gRPC call is cancelled, status ``cancelled``, delivered = the
  chunks the servicer *wrote to the gRPC stream* (``Delivered``: counted
  once ``context.write`` returned), not those still queued in the router.

The chunks are chat completion chunks or, on a streamed Responses call, the
Responses events the servicer wrote (their ``delta`` text counts).

``Delivered`` keeps a running count of tokens, not the chunks: an open stream
then holds a few integers instead of every chunk it sent (about 200 bytes
each, 40 KiB by the end of a 200-chunk stream; issue 20 point 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from gateway_common.tokens import estimate, prompt_tokens

from .providers.base import Operation, Usage

__all__ = ["Delivered", "delivered_usage"]


def delivered_usage(
    operation: Operation, body: Mapping[str, Any], chunks: Iterable[bytes]
) -> Usage:
    """The estimated usage of a call whose ``chunks`` (OpenAI chat chunk JSON) were delivered."""
    delivered = Delivered()
    delivered.add(chunks)
    return delivered.usage(operation, body)


class Delivered:
    """The completion tokens, estimated, of the chunks of one stream that went out.

    ``handlers.RouterServicer`` adds each chunk once ``context.write`` has
    returned for its message; ``RouterService`` bills a cancelled stream by it,
    and counts what it yielded with one of its own.
    """

    def __init__(self) -> None:
        self.completion_tokens = 0

    def add(self, chunks: Iterable[bytes]) -> None:
        """Count the generated text of ``chunks`` as delivered."""
        self.completion_tokens += sum(_tokens(chunk) for chunk in chunks)

    def usage(self, operation: Operation, body: Mapping[str, Any]) -> Usage:
        """The usage to bill: the prompt of ``body``, estimated, and what was delivered."""
        kind: Literal["chat.completions", "responses"] = (
            "responses" if operation == "responses" else "chat.completions"
        )
        prompt = prompt_tokens(kind, body, estimate)
        completion = self.completion_tokens
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


def _tokens(chunk: bytes) -> int:
    """The estimated tokens of one chunk's generated text: content, refusal, reasoning, tool
    call name and arguments (chat), or the ``delta`` of a Responses ``*.delta`` event.

    A loop rather than a generator of texts: it runs once per chunk of every stream.
    """
    try:
        data = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(data, dict):
        return 0
    if str(data.get("type", "")).endswith(".delta"):
        value = data.get("delta")
        return estimate(value) if isinstance(value, str) else 0
    tokens = 0
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for key in ("content", "refusal", "reasoning_content", "reasoning"):
            if isinstance(value := delta.get(key), str):
                tokens += estimate(value)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(value := function.get(key), str):
                        tokens += estimate(value)
    return tokens
