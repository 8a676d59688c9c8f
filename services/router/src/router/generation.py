"""``generation_context``: a call's priced line items, attached to its answer when asked.

Seed 002's shape, set when ``CompleteRequest.include_generation_context`` is true::

    "generation_context": {
        "generated_usage": [{"sku", "amount", "unit_price", "quantity", "description"}, ...],
        "runned_functions": []
    }

The line items are exactly what billing writes to ``ledger_line_items`` for
the call: ``gateway_common.pricing`` over the router's live catalog (the same
file billing prices from) applied to the very ``UsageRecorded`` the router
published, so the same ``occurred_at`` selects the same dated prices. Amounts
and unit prices are JSON numbers written from the exact decimals. A call that
published no event (its provider reported no usage) or whose event cannot be
priced (billing terminates it as poison) has no line items: the ledger has
none either.

Where it goes (``router.service``):

    unary chat, responses, embeddings   a top-level key of the JSON body
    chat stream                         a key of the last chunk, before the final
                                        ``Usage`` event (the edge writes it just before
                                        [DONE]): the chunk that carried the usage the
                                        client asked for (held back until the event is
                                        published), else one extra
                                        ``chat.completion.chunk`` with ``"choices": []``
    responses stream                    a key of ``response.completed``'s ``response``

Only a call that asks pays for it: the unary body is parsed and re-serialized
once, a stream's first chunk is parsed once; otherwise bodies and chunks pass
through as bytes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_common.errors import ProviderUnavailable
from gateway_common.events import UsageRecorded
from gateway_common.pricing import PriceIndex, PricingError, generated_usage_json

__all__ = ["GenerationContext", "context_json", "with_context"]

log = logging.getLogger(__name__)

_NO_ITEMS = b'{"generated_usage":[],"runned_functions":[]}'


def context_json(prices: PriceIndex, event: UsageRecorded | None) -> bytes:
    """The ``generation_context`` object (JSON bytes) of the call that published ``event``.

    ``None`` (nothing published) and an event that cannot be priced give no
    line items (see the module docstring).
    """
    if event is None:
        return _NO_ITEMS
    try:
        items = prices.price(event)
    except PricingError as exc:
        log.warning("usage event %s cannot be priced: %s", event.event_id, exc)
        return _NO_ITEMS
    return b'{"generated_usage":%b,"runned_functions":[]}' % generated_usage_json(items)


def with_context(body: bytes, context: bytes) -> bytes:
    """``body``, a JSON object, with ``generation_context`` (the JSON ``context``) added last.

    Raises ``ProviderUnavailable`` when ``body`` is not a JSON object.
    """
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise ProviderUnavailable("The provider's answer is not a JSON object")
    answer["generation_context"] = orjson.Fragment(context)
    return orjson.dumps(answer)


@dataclass(frozen=True, slots=True)
class GenerationContext:
    """A stream event, just before the final ``Usage``: the stream's ``generation_context``.

    ``value`` is the object (JSON bytes); ``chunk`` the last
    ``chat.completion.chunk`` of the stream, which carries it to a chat client.
    """

    value: bytes
    chunk: bytes

    @classmethod
    def on_chunk(cls, value: bytes, chunk: bytes) -> GenerationContext:
        """Carried by ``chunk``, a provider chunk held back to go last (the usage chunk)."""
        return cls(value, with_context(chunk, value))

    @classmethod
    def for_stream(cls, value: bytes, first: bytes | None, model: str) -> GenerationContext:
        """Carried by a chunk of its own (``choices: []``) with the id, created and model of
        ``first``, the stream's first forwarded chunk."""
        head: Any = None
        if first is not None:
            try:
                head = orjson.loads(first)
            except orjson.JSONDecodeError:
                head = None
        if not isinstance(head, dict):
            head = {}
        chunk: dict[str, Any] = {
            "id": head.get("id") or "",
            "object": "chat.completion.chunk",
            "created": head.get("created") or int(time.time()),
            "model": head.get("model") or model,
            "choices": [],
            "generation_context": orjson.Fragment(value),
        }
        return cls(value, orjson.dumps(chunk))
