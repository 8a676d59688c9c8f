"""Pricing: a usage event becomes SKU line items, in exact decimal arithmetic.

Shared by billing (which writes the line items to the ledger) and the router
(which attaches the same line items to responses), so both price an event the
same way: the same ``PriceIndex`` built from the same catalog file yields the
same items for the same event.

Line items per event, in this order (``<op>`` is ``chat_completions`` or ``responses``)::

    <sku>                           each of event.sku_usage   catalog.skus[sku] price
    inference.<op>.in               prompt - cached - written  input price
    inference.<op>.in.cached        cached_tokens (if > 0)     cached_input, else input
    inference.<op>.in.cache_write   cache_write_tokens (if >0) cache_write, else input
    inference.<op>.out              completion - reasoning     output price
    inference.<op>.out.reasoning    reasoning_tokens (if > 0)  reasoning, else output
    inference.embeddings.in         prompt_tokens              input price

An event whose ``model`` is "" made no model call (rag's ``rag.ingest.tokens``
metering), and one with ``own_endpoint`` called the project's own endpoint (seed
002's BYOK gateway, billed ``byok``): only its ``sku_usage`` is priced.

Prices have effective dates: a model's ``prices`` apply until the first entry
of its ``prices_history`` whose ``effective_from`` is at or before the event's
``occurred_at`` (likewise for SKUs). An event is priced at the prices in
effect when it *occurred*, never when it is billed, so a redelivery days later
or a second reader (router vs billing) gets the same amounts; scheduling a
change ahead of its date lets every process load it before it applies.

``amount = quantity * unit_price`` exactly: products are computed in a context
whose precision exceeds any amount we store and that traps ``Inexact``, so a
rounding would be an error rather than a silent loss. No float touches money.

Errors (``PricingError`` and subclasses) mean the event cannot be priced as it
stands; billing terminates such a message. They are not ``GatewayError``s:
they never cross a service boundary.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from typing import Generic, TypeVar

import orjson

from .catalog import Catalog, Prices
from .events import UsageRecorded

__all__ = [
    "InconsistentUsage",
    "LineItem",
    "PriceIndex",
    "PricingError",
    "UnknownModel",
    "UnknownSku",
    "decimal_text",
    "exact_sum",
    "generated_usage_json",
    "price_usage",
]

T = TypeVar("T")

#: Far above the 38 significant digits a stored amount may have; products of a
#: price and a token count fit, and the Inexact trap proves it for each one.
_PRECISION = 100


def _exact() -> Context:
    return Context(prec=_PRECISION, traps=[Inexact, Rounded, InvalidOperation])


class PricingError(ValueError):
    """The event cannot be priced; retrying will not help."""


class UnknownModel(PricingError):
    """The event names a model the catalog does not have."""


class UnknownSku(PricingError):
    """The event names an extra SKU the catalog's ``skus`` does not have."""


class InconsistentUsage(PricingError):
    """The token counts contradict each other (e.g. more cached than prompt tokens)."""


@dataclass(frozen=True, slots=True)
class LineItem:
    """One priced SKU; ``amount == quantity * unit_price`` exactly."""

    sku: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    description: str


def price_usage(event: UsageRecorded, prices: Prices) -> list[LineItem]:
    """The model-token line items of ``event`` at ``prices`` (pure; see the module table).

    Raises ``InconsistentUsage`` when cached > prompt or reasoning > completion
    tokens, since a negative quantity cannot be billed.
    """
    usage = event.usage
    description = f"Inference for AI model '{event.model}'"
    ctx = _exact()

    def item(sku: str, quantity: int, unit_price: Decimal) -> LineItem:
        return LineItem(
            sku, quantity, unit_price, ctx.multiply(unit_price, Decimal(quantity)), description
        )

    if event.operation == "embeddings":
        return [item("inference.embeddings.in", usage.prompt_tokens, prices.input)]
    if usage.cached_tokens > usage.prompt_tokens:
        raise InconsistentUsage(
            f"event {event.event_id}: cached_tokens {usage.cached_tokens} > "
            f"prompt_tokens {usage.prompt_tokens}"
        )
    if usage.reasoning_tokens > usage.completion_tokens:
        raise InconsistentUsage(
            f"event {event.event_id}: reasoning_tokens {usage.reasoning_tokens} > "
            f"completion_tokens {usage.completion_tokens}"
        )
    if usage.cached_tokens + usage.cache_write_tokens > usage.prompt_tokens:
        raise InconsistentUsage(
            f"event {event.event_id}: cached_tokens {usage.cached_tokens} + cache_write_tokens "
            f"{usage.cache_write_tokens} > prompt_tokens {usage.prompt_tokens}"
        )
    prefix = f"inference.{event.operation.replace('.', '_')}"
    fresh = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    items = [item(f"{prefix}.in", fresh, prices.input)]
    if usage.cached_tokens:
        cached = prices.input if prices.cached_input is None else prices.cached_input
        items.append(item(f"{prefix}.in.cached", usage.cached_tokens, cached))
    if usage.cache_write_tokens:
        written = prices.input if prices.cache_write is None else prices.cache_write
        items.append(item(f"{prefix}.in.cache_write", usage.cache_write_tokens, written))
    items.append(
        item(f"{prefix}.out", usage.completion_tokens - usage.reasoning_tokens, prices.output)
    )
    if usage.reasoning_tokens:
        reasoning = prices.output if prices.reasoning is None else prices.reasoning
        items.append(item(f"{prefix}.out.reasoning", usage.reasoning_tokens, reasoning))
    return items


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (raises ``decimal.Inexact`` rather than round)."""
    ctx = _exact()
    result = Decimal(0)
    for value in values:
        result = ctx.add(result, value)
    return result


def decimal_text(value: Decimal) -> str:
    """``value`` as a plain numeral: no exponent, no trailing fractional zeros (``0.0000207``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def generated_usage_json(items: Sequence[LineItem]) -> bytes:
    """``items`` as seed 002's ``generation_context.generated_usage`` JSON array.

    Amounts and unit prices are JSON numbers written from the exact decimals
    (``0.0000207``, never a float's ``2.0699999e-05``), so a client reading
    them as decimals gets exactly what the ledger holds.
    """
    parts = [
        b'{"sku":%b,"amount":%b,"unit_price":%b,"quantity":%d,"description":%b}'
        % (
            orjson.dumps(item.sku),
            decimal_text(item.amount).encode(),
            decimal_text(item.unit_price).encode(),
            item.quantity,
            orjson.dumps(item.description),
        )
        for item in items
    ]
    return b"[" + b",".join(parts) + b"]"


@dataclass(frozen=True, slots=True)
class _Schedule(Generic[T]):
    """Values by effective date: ``starts[i]`` opens ``values[i + 1]``; ``values[0]`` is the base."""

    starts: tuple[datetime, ...]
    values: tuple[T, ...]

    def at(self, moment: datetime) -> T:
        return self.values[bisect_right(self.starts, moment)]


@dataclass(frozen=True, slots=True)
class _Sku:
    description: str
    prices: _Schedule[Decimal]


class PriceIndex:
    """The catalog's prices by public name, alias and SKU, with their effective dates.

    Immutable once built; build a new one when the catalog changes. Lookups
    are a dict get plus a binary search over the (usually empty) history.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._models: dict[str, _Schedule[Prices]] = {}
        for name, model in catalog.models.items():
            history = model.prices_history
            schedule = _Schedule(
                tuple(change.effective_from for change in history),
                (model.prices, *(change.prices for change in history)),
            )
            for public in (name, *model.aliases):
                self._models[public] = schedule
        self._skus = {
            sku: _Sku(
                entry.description,
                _Schedule(
                    tuple(change.effective_from for change in entry.prices_history),
                    (entry.unit_price, *(change.unit_price for change in entry.prices_history)),
                ),
            )
            for sku, entry in catalog.skus.items()
        }

    def knows(self, model: str) -> bool:
        """Whether ``model`` is a public name or alias in this catalog."""
        return model in self._models

    def prices_at(self, model: str, moment: datetime) -> Prices:
        """The prices of ``model`` in effect at ``moment``; raises ``UnknownModel``."""
        schedule = self._models.get(model)
        if schedule is None:
            raise UnknownModel(f"model {model!r} not in catalog")
        return schedule.at(_aware(moment))

    def price(self, event: UsageRecorded) -> list[LineItem]:
        """All line items of ``event`` at the prices in effect at ``event.occurred_at``.

        Raises ``UnknownModel``, ``UnknownSku`` or ``InconsistentUsage``.
        """
        moment = _aware(event.occurred_at)
        ctx = _exact()
        if not event.model or event.own_endpoint:
            # No model call (rag's ingestion metering), or one on the project's own endpoint
            # (its model is not the catalog's): only the extra SKUs are priced.
            return self._sku_items(event, moment, ctx)
        try:
            prices = self.prices_at(event.model, moment)
        except UnknownModel as exc:
            raise UnknownModel(f"event {event.event_id}: {exc}") from None
        return self._sku_items(event, moment, ctx) + price_usage(event, prices)

    def _sku_items(self, event: UsageRecorded, moment: datetime, ctx: Context) -> list[LineItem]:
        items: list[LineItem] = []
        for used in event.sku_usage:
            sku = self._skus.get(used.sku)
            if sku is None:
                raise UnknownSku(f"event {event.event_id}: sku {used.sku!r} not in catalog")
            unit_price = sku.prices.at(moment)
            amount = ctx.multiply(unit_price, Decimal(used.quantity))
            items.append(LineItem(used.sku, used.quantity, unit_price, amount, sku.description))
        return items

    def worst_case(
        self, model: str, moment: datetime, *, prompt_tokens: int, max_completion_tokens: int
    ) -> Decimal:
        """An upper bound of a call's model cost, for admission against a budget.

        Every prompt token at the dearer of the input and cached-input price,
        every completion token at the dearer of the output and reasoning price.
        Raises ``UnknownModel``.
        """
        prices = self.prices_at(model, moment)
        ctx = _exact()
        per_in = max(
            prices.input, prices.cached_input or Decimal(0), prices.cache_write or Decimal(0)
        )
        per_out = max(prices.output, prices.reasoning or Decimal(0))
        return ctx.add(
            ctx.multiply(per_in, Decimal(prompt_tokens)),
            ctx.multiply(per_out, Decimal(max_completion_tokens)),
        )


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are UTC (events always carry a zone; this guards hand-made ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
