"""Refusing a prompt that cannot fit its model's context window, before anything is paid.

``Proxy.forward`` calls ``ContextWindow.check`` first, for chat completions and
Responses calls (plain and streamed, the Gateway API's included), before the
budget is admitted and the router called. A refusal is OpenAI's 400
``context_length_exceeded`` (``gateway_common.errors.ContextLengthExceeded``):

    chat completions   param ``messages``; "This model's maximum context length is N
                       tokens. However, your messages resulted in M tokens. ..." (or,
                       when the prompt fits but not with the request's max tokens,
                       "... you requested P+C tokens (P in the messages, C in the
                       completion) ...")
    Responses          param ``input``; OpenAI's Responses wording, which states no
                       numbers

The rule is OpenAI's: refused when the prompt alone exceeds the window, or the
prompt plus the request's own completion cap (``max_completion_tokens`` /
``max_tokens`` / ``max_output_tokens``; unset counts 0) does.

Counting (``gateway_common.tokens``): the model's tokenizer when one is known
(the catalog's ``tokenizer``, or tiktoken's model table for OpenAI deployments:
exact), else the documented estimate (one token per 6 characters, low on
purpose so a prompt the provider would take is never refused; what it lets
through near the limit the provider refuses, and the router maps that to the
same 400).

The hot path stays cheap: a body whose bytes alone prove it fits
(``tokens.fits_for_sure``: two scans of the bytes, no parse) is never
counted; only a body longer in bytes than the window (minus the completion
cap) is parsed and counted. Exact counting runs in a worker thread (loading an
encoding takes ~0.5 s once per process, encoding a few MiB a fraction of a
second); the estimate runs inline. Models the catalog does not know, or
whose ``context_window`` is 0, are never refused here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson

from gateway.router.v1 import router_pb2
from gateway_common import tokens
from gateway_common.errors import ContextLengthExceeded

from .pricebook import PriceBook, Window

__all__ = ["ContextWindow"]

_Operation = Literal["chat.completions", "responses"]

_OPERATIONS: dict[int, _Operation] = {
    router_pb2.OPERATION_CHAT_COMPLETIONS: "chat.completions",
    router_pb2.OPERATION_RESPONSES: "responses",
}


class ContextWindow:
    """The context-window check of routed calls (see the module docstring); one per edge.

    ``encodings`` is the process's ``tokens.Encodings`` (built by ``main``).
    """

    def __init__(self, prices: PriceBook, encodings: tokens.Encodings) -> None:
        self._prices = prices
        self._encodings = encodings

    async def check(
        self,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        *,
        max_output_tokens: int | None = None,
    ) -> None:
        """Raise ``ContextLengthExceeded`` if ``body`` (the JSON body about to be sent for
        ``op`` to ``model``) cannot fit the model's window with ``max_output_tokens``."""
        operation = _OPERATIONS.get(op)
        if operation is None:
            return
        window = self._prices.window(model)
        if window is None or not window.context_window:
            return
        completion = max(max_output_tokens or 0, 0)
        if tokens.fits_for_sure(body, window.context_window - completion):
            return
        prompt = await self._count(operation, window, body)
        if operation == "responses":
            if prompt + completion > window.context_window:
                raise ContextLengthExceeded(tokens.RESPONSES_OVERFLOW, param="input")
            return
        message = tokens.overflow_message(window.context_window, prompt, completion)
        if message is not None:
            raise ContextLengthExceeded(message, param="messages")

    async def _count(self, operation: _Operation, window: Window, body: bytes) -> int:
        if window.tokenizer is None:
            return _prompt_tokens(operation, body, tokens.estimate)
        return await asyncio.to_thread(self._exact, operation, window.tokenizer, body)

    def _exact(self, operation: _Operation, tokenizer: tokens.TokenizerName, body: bytes) -> int:
        """Blocking: builds the encoding on first use, then counts."""
        return _prompt_tokens(operation, body, tokens.text_counter(self._encodings, tokenizer))


def _prompt_tokens(operation: _Operation, body: bytes, count: tokens.TextCount) -> int:
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0  # not ours to judge: the body check answers a malformed body
    if not isinstance(parsed, dict):
        return 0
    return tokens.prompt_tokens(operation, parsed, count)
