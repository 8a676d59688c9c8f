"""Model resolution: from the model string a client sent to an ordered list of candidates.

Accepted forms, tried in this order:

    gpt-4o               a public model name or one of its aliases (catalog order of deployments)
    openai:gpt-4o        only the deployments on provider ``openai``
    @openai/gpt-4o       the same, in the other common spelling

A whole string that is itself a public name wins over a prefix reading, so a
name containing ``:`` or ``/`` (fine-tune ids) still resolves. Anything else
is ``ModelNotFound`` with the message OpenAI uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway_common.catalog import Catalog, Deployment, ModelEntry, Resilience
from gateway_common.errors import ModelNotFound

from .providers.base import ProviderAdapter

__all__ = ["Candidate", "Route", "RoutingTable", "split_provider"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model, with the adapter that reaches it."""

    provider: str
    deployment: Deployment
    adapter: ProviderAdapter

    @property
    def provider_model(self) -> str:
        return self.deployment.model

    @property
    def key(self) -> str:
        """``provider/deployment``, the name an attempt's error is filed under."""
        return f"{self.provider}/{self.deployment.id}"


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved model: its public name, catalog entry, candidates in catalog order, and
    the catalog's failure-handling policy (``router.balancer`` decides the order tried)."""

    model: str
    entry: ModelEntry
    candidates: tuple[Candidate, ...]
    policy: Resilience = field(default_factory=Resilience)


def split_provider(model: str) -> tuple[str, str] | None:
    """``"openai:gpt-4o"`` or ``"@openai/gpt-4o"`` -> ``("openai", "gpt-4o")``; else ``None``."""
    if model.startswith("@"):
        provider, sep, name = model[1:].partition("/")
    else:
        provider, sep, name = model.partition(":")
    return (provider, name) if sep and provider and name else None


def _not_found(model: str) -> ModelNotFound:
    return ModelNotFound(
        f"The model `{model}` does not exist or you do not have access to it.", param="model"
    )


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """An immutable snapshot: a validated catalog plus one adapter per provider."""

    catalog: Catalog
    adapters: Mapping[str, ProviderAdapter]

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises ``ModelNotFound`` for an unknown model or provider."""
        only_provider: str | None = None
        found = self.catalog.resolve(model)
        if found is None and (split := split_provider(model)) is not None:
            only_provider, name = split
            if only_provider in self.catalog.providers:
                found = self.catalog.resolve(name)
        if found is None:
            raise _not_found(model)
        public, entry = found
        candidates = tuple(
            Candidate(dep.provider, dep, self.adapters[dep.provider])
            for dep in entry.deployments
            if only_provider is None or dep.provider == only_provider
        )
        if not candidates:
            raise _not_found(model)
        return Route(public, entry, candidates, self.catalog.resilience)
