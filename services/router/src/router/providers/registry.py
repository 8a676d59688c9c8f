"""Provider registry: catalog provider ``kind`` -> adapter factory.

Adding a provider is one adapter module plus one entry in ``FACTORIES``; there
is no dispatch by string anywhere else. ``build_adapters`` is the one place
credentials are resolved: a provider's ``api_key_env`` is read from the
environment mapping it is given (``os.environ`` in ``main``), never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

import httpx

from gateway_common.catalog import Catalog, CatalogError, ProviderEntry

from . import anthropic, gemini, openai_compat
from .base import ProviderAdapter

__all__ = ["FACTORIES", "AdapterFactory", "build_adapters", "check_kinds"]

log = logging.getLogger(__name__)


class AdapterFactory(Protocol):
    """Builds the adapter (and its pooled HTTP client) for one catalog provider entry."""

    def __call__(
        self,
        name: str,
        entry: ProviderEntry,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ProviderAdapter: ...


#: Every provider kind this router can talk to.
FACTORIES: Mapping[str, AdapterFactory] = MappingProxyType(
    {
        "openai": openai_compat.build,
        "azure_openai": openai_compat.build_azure,
        "anthropic": anthropic.build,
        "gemini": gemini.build,
    }
)


def check_kinds(catalog: Catalog, factories: Mapping[str, AdapterFactory] = FACTORIES) -> None:
    """Refuse a catalog naming a provider kind without an adapter (``CatalogError``)."""
    for name, entry in catalog.providers.items():
        if entry.kind not in factories:
            supported = ", ".join(sorted(factories))
            raise CatalogError(
                f"providers.{name}: kind {entry.kind!r} is not supported by this router "
                f"(supported: {supported})"
            )


def build_adapters(
    catalog: Catalog,
    environ: Mapping[str, str],
    *,
    reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]] = MappingProxyType({}),
    factories: Mapping[str, AdapterFactory] = FACTORIES,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, ProviderAdapter]:
    """One adapter per catalog provider, keyed by provider name.

    An entry equal to one in ``reuse`` keeps that adapter (and its warm
    connection pool); every other entry gets a new adapter. ``transport``
    replaces the network for every new client (tests only).
    """
    check_kinds(catalog, factories)
    adapters: dict[str, ProviderAdapter] = {}
    for name, entry in catalog.providers.items():
        previous = reuse.get(name)
        if previous is not None and previous[0] == entry:
            adapters[name] = previous[1]
            continue
        api_key = environ.get(entry.api_key_env) if entry.api_key_env else None
        if entry.api_key_env and not api_key:
            log.warning(
                "provider %s: %s is not set; calls go out without a key unless the caller brings one",
                name,
                entry.api_key_env,
            )
        adapters[name] = factories[entry.kind](name, entry, api_key, transport=transport)
    return adapters
