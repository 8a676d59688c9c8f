"""Custom upstreams: a managed credential may send its provider's calls to its own base URL.

``CustomUpstreams.bind(table, route, base_urls)`` is an async context manager
yielding ``route`` with every candidate whose provider has a custom base URL
(``base_urls``: provider name -> URL, from the call's credentials) moved onto
an adapter for that URL. The adapter is built like the catalog provider's
(same kind, timeouts, pool size and non-secret headers) but *without* the
provider's configured key: the operator's key never goes to a URL a user
typed, and each attempt presents the credential's own key anyway.

Request-time check. A URL was checked when it was saved, but a name can
resolve elsewhere later (DNS rebinding), so every call that uses one checks it
again with ``gateway_common.netguard`` (one resolution in a worker thread).
Loopback, link-local, private and other non-global addresses are refused
unless the operator allows private upstreams (``ROUTER_ALLOW_PRIVATE_UPSTREAMS``);
metadata addresses always are. A refused URL fails the call with
``PermissionDenied`` (code ``unsafe_base_url``, not retryable) naming the
provider and the rule; the message never carries a key.

Clients. Adapters are cached per ``(provider, base_url)``, at most
``max_clients``, least recently used evicted first. A bound call holds its
adapters until the context exits, so an adapter evicted (or replaced after a
catalog change of its provider entry; a change of its ``breaker`` block alone
keeps it) while calls use it is closed when the last of them ends; ``aclose``
closes every one at shutdown.

Breakers. A moved candidate carries its URL as ``Candidate.upstream``, so its
attempts answer to the breaker of that (deployment, URL), not to the
deployment's shared one (``router.breaker``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import InvalidRequest, PermissionDenied
from gateway_common.netguard import Resolver, check_base_url

from .providers.base import ProviderAdapter
from .providers.registry import FACTORIES, AdapterFactory
from .routing import Route, RoutingTable

__all__ = ["DEFAULT_MAX_CLIENTS", "NO_UPSTREAMS", "CustomUpstreams"]

#: Custom-URL adapters (connection pools) kept at once by default.
DEFAULT_MAX_CLIENTS = 64

#: No custom base URLs: every candidate keeps its catalog adapter.
NO_UPSTREAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class _Slot:
    entry: ProviderEntry
    adapter: ProviderAdapter
    users: int = 0
    retired: bool = False


class CustomUpstreams:
    """The bounded, shared cache of custom-URL adapters of one router process."""

    def __init__(
        self,
        *,
        allow_private: bool,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        factories: Mapping[str, AdapterFactory] = FACTORIES,
        resolver: Resolver | None = None,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self._allow_private = allow_private
        self._max = max_clients
        self._factories = factories
        self._resolver = resolver
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self._retired_slots: list[_Slot] = []

    def __len__(self) -> int:
        return len(self._slots)

    def bind(self, table: RoutingTable, route: Route, base_urls: Mapping[str, str]) -> _Binding:
        """``async with`` it: ``route`` with the custom base URLs of ``base_urls`` applied."""
        return _Binding(self, table, route, base_urls)

    async def aclose(self) -> None:
        """Close every adapter, cached or retired but still in use (shutdown)."""
        slots = [*self._slots.values(), *self._retired_slots]
        self._slots.clear()
        self._retired_slots.clear()
        for slot in slots:
            await slot.adapter.aclose()

    async def acquire(self, provider: str, entry: ProviderEntry, base_url: str) -> _Slot:
        """The adapter slot of ``base_url`` for ``provider`` (held until ``release``).

        Checks ``base_url`` first (module docstring); raises ``PermissionDenied``.
        """
        try:
            await asyncio.to_thread(
                check_base_url, base_url, allow_private=self._allow_private, resolver=self._resolver
            )
        except InvalidRequest as exc:
            raise PermissionDenied(
                f"The managed credential for provider `{provider}`: {exc.message}", code=exc.code
            ) from None
        key = (provider, base_url)
        slot = self._slots.get(key)
        if slot is not None and slot.entry is not entry:
            if slot.entry.same_client(entry):
                slot.entry = entry
            else:  # the catalog changed how this provider is reached
                await self._retire(self._slots.pop(key))
                slot = None
        if slot is None:
            custom = entry.model_copy(update={"base_url": base_url})
            adapter = self._factories[entry.kind](provider, custom, None)
            slot = self._slots[key] = _Slot(entry, adapter)
            while len(self._slots) > self._max:
                _, oldest = self._slots.popitem(last=False)
                await self._retire(oldest)
        else:
            self._slots.move_to_end(key)
        slot.users += 1
        return slot

    async def release(self, slot: _Slot) -> None:
        """Let go of a slot ``acquire`` returned; a retired one closes with its last user."""
        slot.users -= 1
        if slot.retired and slot.users == 0:
            self._retired_slots.remove(slot)
            await slot.adapter.aclose()

    async def _retire(self, slot: _Slot) -> None:
        if slot.users == 0:
            await slot.adapter.aclose()
            return
        slot.retired = True
        self._retired_slots.append(slot)


class _Binding:
    """What ``CustomUpstreams.bind`` returns; holds the call's adapters until it exits."""

    __slots__ = ("_base_urls", "_held", "_owner", "_route", "_table")

    def __init__(
        self, owner: CustomUpstreams, table: RoutingTable, route: Route, urls: Mapping[str, str]
    ) -> None:
        self._owner = owner
        self._table = table
        self._route = route
        self._base_urls = urls
        self._held: list[_Slot] = []

    async def __aenter__(self) -> Route:
        route, urls = self._route, self._base_urls
        if not urls:
            return route
        adapters: dict[str, tuple[ProviderAdapter, str]] = {}
        try:
            for provider in dict.fromkeys(c.provider for c in route.candidates):
                base_url = urls.get(provider)
                if base_url:
                    entry = self._table.catalog.providers[provider]
                    slot = await self._owner.acquire(provider, entry, base_url)
                    self._held.append(slot)
                    adapters[provider] = (slot.adapter, base_url)
        except BaseException:
            await self._release_all()
            raise
        if not adapters:
            return route
        candidates = tuple(
            replace(c, adapter=adapters[c.provider][0], upstream=adapters[c.provider][1])
            if c.provider in adapters
            else c
            for c in route.candidates
        )
        return replace(route, candidates=candidates)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release_all()

    async def _release_all(self) -> None:
        held, self._held = self._held, []
        for slot in held:
            await self._owner.release(slot)
