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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson

from gateway_common.tokens import estimate, prompt_tokens

from .providers.base import Operation, Usage

__all__ = ["Delivered", "delivered_usage"]


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


class Delivered:
    """The chunks of one stream that went out to the caller, in order.

    ``handlers.RouterServicer`` adds each chunk once ``context.write`` has
    returned for its message; ``RouterService`` bills a cancelled stream by it.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def add(self, chunks: Iterable[bytes]) -> None:
        """Count ``chunks`` as delivered."""
        self._chunks.extend(chunks)

    @property
    def chunks(self) -> Sequence[bytes]:
        return self._chunks


def _texts(chunk: bytes) -> Iterable[str]:
    """The generated text of one chunk: content, refusal, reasoning, tool call arguments
    (chat), or the ``delta`` of a Responses ``*.delta`` event."""
    try:
        data = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return
    if isinstance(data, dict) and str(data.get("type", "")).endswith(".delta"):
        if isinstance(value := data.get("delta"), str):
            yield value
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
