"""The catalog in force: a ``RoutingTable`` that is swapped when the file changes.

``LiveCatalog`` polls the file's stat (mtime, size, inode: a ConfigMap update
swaps a symlink) every ``poll_s``. A valid new file becomes a new table
atomically: providers whose entry did not change (or changed only its
``breaker`` block) keep their adapter and warm connection pool; changed or
removed ones get retired. Breaker state is not the table's: it lives in
``Failover`` and survives a reload (``router.breaker``: the new settings apply
from each breaker's next verdict). A retired adapter is
closed once every call that leased an older table has finished, or after
``retire_grace_s``. A broken file is logged with the parser's message and the
old table stays in force. At start-up a broken file is fatal.

Calls take a ``lease()`` for as long as they use adapters (a stream: until
its last chunk), which is what makes retirement safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway_common.catalog import Catalog, CatalogError, ProviderEntry, load_catalog

from .metrics import RouterMetrics
from .providers.base import ProviderAdapter
from .routing import RoutingTable

__all__ = ["BuildAdapters", "LiveCatalog"]

log = logging.getLogger(__name__)


class BuildAdapters(Protocol):
    """Builds one adapter per provider, reusing those whose entry is unchanged."""

    def __call__(
        self, catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]: ...


class _Generation:
    """One table and the number of calls still using it."""

    __slots__ = ("idle", "inflight", "table")

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()


class _Lease:
    """One call's hold on the generation in force when it entered (``LiveCatalog.lease``).

    A class rather than ``contextlib.asynccontextmanager``: every call takes one.
    """

    __slots__ = ("_catalog", "_generation")

    def __init__(self, catalog: LiveCatalog) -> None:
        self._catalog = catalog
        self._generation: _Generation | None = None

    async def __aenter__(self) -> RoutingTable:
        generation = self._generation = self._catalog._generation
        generation.inflight += 1
        generation.idle.clear()
        return generation.table

    async def __aexit__(self, *exc_info: object) -> None:
        generation = self._generation
        if generation is None:
            return
        generation.inflight -= 1
        if generation.inflight == 0:
            generation.idle.set()


def _reusable(
    table: RoutingTable, catalog: Catalog
) -> dict[str, tuple[ProviderEntry, ProviderAdapter]]:
    """``table``'s adapters by provider, each with the entry it serves; an entry that
    ``catalog`` changed only in its ``breaker`` block is given as the new one."""
    reuse: dict[str, tuple[ProviderEntry, ProviderAdapter]] = {}
    for name, adapter in table.adapters.items():
        entry = table.catalog.providers[name]
        new = catalog.providers.get(name)
        reuse[name] = (new if new is not None and entry.same_client(new) else entry, adapter)
    return reuse


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class LiveCatalog:
    """Owns the routing table in force and every adapter in it."""

    def __init__(
        self,
        path: Path,
        build: BuildAdapters,
        metrics: RouterMetrics,
        *,
        poll_s: float = 2.0,
        retire_grace_s: float = 120.0,
    ) -> None:
        self._path = path
        self._build = build
        self._metrics = metrics
        self._poll_s = poll_s
        self._retire_grace_s = retire_grace_s
        self._current: _Generation | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._draining: list[_Generation] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """First load; raises ``CatalogError`` when the file is missing or invalid."""
        self._stamp = _stamp(self._path)
        catalog = await asyncio.to_thread(load_catalog, self._path)
        self._current = _Generation(RoutingTable(catalog, self._build(catalog, reuse={})))
        self._metrics.declare_models(catalog.models)

    @property
    def table(self) -> RoutingTable:
        """The table in force, for reads that call no adapter (e.g. listing models)."""
        return self._generation.table

    def lease(self) -> _Lease:
        """``async with`` it: the table in force, whose adapters stay open until the lease ends."""
        return _Lease(self)

    def start(self) -> None:
        """Start polling the file in the background (stopped by ``aclose``)."""
        self._spawn(self._watch())

    async def reload_if_changed(self) -> bool:
        """Swap in the file's catalog if the file changed and is valid; ``True`` if swapped."""
        stamp = _stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        old = self._generation
        try:
            catalog = await asyncio.to_thread(load_catalog, self._path)
            adapters = self._build(catalog, reuse=_reusable(old.table, catalog))
        except CatalogError as exc:
            self._metrics.catalog_reloads.labels("error").inc()
            log.error("catalog not reloaded, keeping the previous one: %s", exc)
            return False
        self._current = _Generation(RoutingTable(catalog, adapters))
        self._metrics.catalog_reloads.labels("ok").inc()
        self._metrics.declare_models(catalog.models)
        log.info("catalog reloaded: %d models, %d providers", len(catalog.models), len(adapters))
        kept = {id(adapter) for adapter in adapters.values()}
        dropped = [a for a in old.table.adapters.values() if id(a) not in kept]
        self._draining = [g for g in self._draining if not g.idle.is_set()] + [old]
        if dropped:
            self._spawn(self._retire(dropped, tuple(self._draining)))
        return True

    async def aclose(self) -> None:
        """Stop polling and close every adapter, retired or in force."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._current is not None:
            for adapter in self._current.table.adapters.values():
                await adapter.aclose()

    @property
    def _generation(self) -> _Generation:
        if self._current is None:
            raise RuntimeError("LiveCatalog.load() has not run")
        return self._current

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.reload_if_changed()

    async def _retire(
        self, adapters: Sequence[ProviderAdapter], generations: Sequence[_Generation]
    ) -> None:
        try:
            async with asyncio.timeout(self._retire_grace_s):
                for generation in generations:
                    await generation.idle.wait()
        except TimeoutError:
            log.warning("closing %d retired provider clients with calls in flight", len(adapters))
        finally:
            for adapter in adapters:
                await adapter.aclose()
