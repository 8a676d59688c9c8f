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
    chat stream                         a key of the stream's last chunk, one the client
                                        gets anyway, before the final ``Usage`` event (the
                                        edge writes it just before [DONE]): the usage chunk
                                        (``"choices": []``) when the client asked for
                                        ``stream_options.include_usage``, else the last
                                        chunk in which a choice finishes (seed 002's: a
                                        ``finish_reason`` and an empty delta)
    responses stream                    a key of ``response.completed``'s ``response``

A chat stream holds back only ``final`` chunks (``StreamChunk.final``: a
choice finishes in it, or it is the usage chunk), each until the next chunk
arrives and the last until the usage event is published; every other chunk
goes out at once, so the time to the first token is unchanged.
A provider stream with no final chunk at all gets no ``generation_context``:
the gateway adds no chunk OpenAI would not send (a ``"choices": []`` chunk
the client did not ask for breaks clients that read ``choices[0]``).

Only a call that asks pays for it: the unary body is parsed and re-serialized
once, a stream's last chunk likewise; otherwise bodies and chunks pass
through as bytes.
"""

from __future__ import annotations

import logging
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
    ``chat.completion.chunk`` of a chat stream, which carries it to the client.
    A Responses stream's has no chunk (``None``): its translator puts ``value``
    on ``response.completed`` and never passes the event on.
    """

    value: bytes
    chunk: bytes | None

    @classmethod
    def on_chunk(cls, value: bytes, chunk: bytes) -> GenerationContext:
        """Carried by ``chunk``, the provider chunk held back to go last."""
        return cls(value, with_context(chunk, value))
