"""Pricing: a usage event becomes SKU line items, in exact decimal arithmetic.

Line items per operation (``<op>`` is ``chat_completions`` or ``responses``)::

    inference.<op>.in               prompt_tokens - cached_tokens      input price
    inference.<op>.in.cached        cached_tokens (only when > 0)      cached_input, else input
    inference.<op>.out              completion_tokens - reasoning      output price
    inference.<op>.out.reasoning    reasoning_tokens (only when > 0)   reasoning, else output
    inference.embeddings.in         prompt_tokens                      input price

``amount = quantity * unit_price`` exactly: prices are ``Decimal`` from the
catalog, products are computed in a context whose precision exceeds any
product we can store and that traps ``Inexact``, so a rounding would be an
error rather than a silent loss. No float ever touches money.

Errors (``PricingError`` and subclasses) mean the event can never be priced
as it stands; the consumer terminates such a message (poison). They are not
``GatewayError``s because they never cross a service boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from pathlib import Path

from gateway_common.catalog import Catalog, CatalogError, Prices, load_catalog
from gateway_common.events import UsageRecorded

__all__ = [
    "InconsistentUsage",
    "LineItem",
    "PriceBook",
    "PricingError",
    "UnknownModel",
    "exact_sum",
    "price_usage",
]

log = logging.getLogger(__name__)

#: Far above the 38 significant digits a stored amount may have; products of a
#: price and a token count fit, and the Inexact trap proves it for each one.
_PRECISION = 100


class PricingError(ValueError):
    """The event cannot be priced; retrying will not help."""


class UnknownModel(PricingError):
    """The event names a model that the catalog (even freshly re-read) does not have."""


class InconsistentUsage(PricingError):
    """The token counts contradict each other (e.g. more cached than prompt tokens)."""


@dataclass(frozen=True, slots=True)
class LineItem:
    """One priced SKU of a ledger entry; ``amount == quantity * unit_price`` exactly."""

    sku: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    description: str


def price_usage(event: UsageRecorded, prices: Prices) -> list[LineItem]:
    """The line items for ``event`` at ``prices`` (pure; see the module table).

    Raises ``InconsistentUsage`` when cached > prompt or reasoning >
    completion tokens, since a negative quantity cannot be billed.
    """
    usage = event.usage
    description = f"Inference for AI model '{event.model}'"
    ctx = Context(prec=_PRECISION, traps=[Inexact, Rounded, InvalidOperation])

    def item(sku: str, quantity: int, unit_price: Decimal) -> LineItem:
        amount = ctx.multiply(unit_price, Decimal(quantity))
        return LineItem(sku, quantity, unit_price, amount, description)

    if event.operation == "embeddings":
        return [item("inference.embeddings.in", usage.prompt_tokens, prices.input)]

    prefix = f"inference.{event.operation.replace('.', '_')}"
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
    items = [item(f"{prefix}.in", usage.prompt_tokens - usage.cached_tokens, prices.input)]
    if usage.cached_tokens:
        cached_price = prices.input if prices.cached_input is None else prices.cached_input
        items.append(item(f"{prefix}.in.cached", usage.cached_tokens, cached_price))
    items.append(
        item(f"{prefix}.out", usage.completion_tokens - usage.reasoning_tokens, prices.output)
    )
    if usage.reasoning_tokens:
        reasoning_price = prices.output if prices.reasoning is None else prices.reasoning
        items.append(item(f"{prefix}.out.reasoning", usage.reasoning_tokens, reasoning_price))
    return items


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (raises ``decimal.Inexact`` rather than round)."""
    ctx = Context(prec=_PRECISION, traps=[Inexact, Rounded, InvalidOperation])
    result = Decimal(0)
    for value in values:
        result = ctx.add(result, value)
    return result


class PriceBook:
    """Prices events from the catalog file, re-reading it when its mtime changes.

    The file is stat'ed at most every ``check_interval_s`` on the hot path,
    and once more whenever a model is not found (so a model the router
    learned a moment ago is not declared poison). A file that fails to
    parse is logged once per version and the last good catalog stays in
    force. Construction reads the file and raises ``CatalogError`` if it is
    unusable: billing does not start without prices.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._interval = check_interval_s
        self._clock = clock
        try:
            self._mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read: {exc}") from exc
        self._prices = _index(load_catalog(path))
        self._next_check = clock() + check_interval_s

    def price(self, event: UsageRecorded) -> list[LineItem]:
        """Line items for ``event``; raises ``UnknownModel`` or ``InconsistentUsage``."""
        now = self._clock()
        if now >= self._next_check:
            self._reload_if_changed(now)
        prices = self._prices.get(event.model)
        if prices is None:
            self._reload_if_changed(now)
            prices = self._prices.get(event.model)
            if prices is None:
                raise UnknownModel(f"event {event.event_id}: model {event.model!r} not in catalog")
        return price_usage(event, prices)

    def _reload_if_changed(self, now: float) -> None:
        self._next_check = now + self._interval
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError as exc:
            log.warning("catalog %s: cannot stat (%s); keeping the loaded prices", self._path, exc)
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime  # also for a bad file: report each version once, not every check
        try:
            self._prices = _index(load_catalog(self._path))
        except CatalogError as exc:
            log.error("catalog reload failed; keeping the previous prices: %s", exc)
            return
        log.info("catalog %s reloaded", self._path)


def _index(catalog: Catalog) -> dict[str, Prices]:
    """Prices by every public name and alias, for one dict lookup per event."""
    index: dict[str, Prices] = {}
    for name, model in catalog.models.items():
        for public in (name, *model.aliases):
            index[public] = model.prices
    return index
