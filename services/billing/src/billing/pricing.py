"""The price book billing applies: the catalog file's prices, re-read when the file changes.

Pricing itself (SKU split, effective dates, exact arithmetic) lives in
``gateway_common.pricing`` so that the router attaches to responses exactly
the line items billing writes to the ledger. This module only keeps the
index current: billing runs for months while the catalog (a ConfigMap) is
edited, and a price change is added ahead of its ``effective_from``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from gateway_common.catalog import CatalogError, load_catalog
from gateway_common.events import UsageRecorded
from gateway_common.pricing import LineItem, PriceIndex, UnknownModel

__all__ = ["PriceBook"]

log = logging.getLogger(__name__)


class PriceBook:
    """Prices events from the catalog file, re-reading it when its mtime changes.

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
        self._path = path
        self._interval = check_interval_s
        self._clock = clock
        try:
            self._mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read: {exc}") from exc
        self._index = PriceIndex(load_catalog(path))
        self._next_check = clock() + check_interval_s

    @property
    def index(self) -> PriceIndex:
        """The prices in force (after a reload if one is due)."""
        now = self._clock()
        if now >= self._next_check:
            self._reload_if_changed(now)
        return self._index

    def price(self, event: UsageRecorded) -> list[LineItem]:
        """Line items for ``event``; raises the ``gateway_common.pricing.PricingError`` family."""
        index = self.index
        if not index.knows(event.model):
            self._reload_if_changed(self._clock())
            index = self._index
            if not index.knows(event.model):
                raise UnknownModel(f"event {event.event_id}: model {event.model!r} not in catalog")
        return index.price(event)

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
            self._index = PriceIndex(load_catalog(self._path))
        except CatalogError as exc:
            log.error("catalog reload failed; keeping the previous prices: %s", exc)
            return
        log.info("catalog %s reloaded", self._path)
