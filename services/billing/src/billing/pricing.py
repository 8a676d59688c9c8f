"""The price book billing applies: the catalog file's prices, re-read when the file changes.

Pricing itself (SKU split, effective dates, exact arithmetic) lives in
``gateway_common.pricing`` so that the router attaches to responses exactly
the line items billing writes to the ledger. This module only keeps the
index current: billing runs for months while the catalog (a ConfigMap) is
edited, and a price change is added ahead of its ``effective_from``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway_common.catalog import CatalogFile
from gateway_common.events import UsageRecorded
from gateway_common.pricing import LineItem, PriceIndex, UnknownModel

__all__ = ["PriceBook"]


class PriceBook:
    """Prices events from the catalog file, re-reading it when it changes (``CatalogFile``).

    The file is checked at most every ``check_interval_s`` seconds, and at
    once when an event names a model the loaded catalog lacks (a model added
    since the last check must not be treated as poison). A file that fails to
    parse is logged and ignored: the last good prices stay in force.
    Construction reads the file and raises ``CatalogError`` if it is
    unusable: billing does not start without prices.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = CatalogFile(path, PriceIndex, check_interval_s=check_interval_s, clock=clock)

    @property
    def index(self) -> PriceIndex:
        """The prices in force (after a reload if one is due)."""
        return self._file.current()

    def price(self, event: UsageRecorded) -> list[LineItem]:
        """Line items for ``event``; raises the ``gateway_common.pricing.PricingError`` family."""
        index = self.index
        # An own-endpoint event's model is the project's, never the catalog's (only its
        # SKUs are priced), so it needs no reload.
        if event.model and not event.own_endpoint and not index.knows(event.model):
            index = self._file.current(force=True)
            if not index.knows(event.model):
                raise UnknownModel(f"event {event.event_id}: model {event.model!r} not in catalog")
        return index.price(event)
