"""Model resolution: from the model string a client sent to an ordered list of candidates.

Accepted forms, tried in this order:

    gpt-4o               a public model name or one of its aliases (catalog order of deployments)
    openai:gpt-4o        only the deployments on provider ``openai``
    @openai/gpt-4o       the same, in the other common spelling

A whole string that is itself a public name wins over a prefix reading, so a
name containing ``:`` or ``/`` (fine-tune ids) still resolves. Anything else
is ``ModelNotFound`` with the message OpenAI uses.

A caller's own provider key (BYOK) belongs to one provider, so a BYOK call is
kept on one: ``Route.one_provider`` narrows the candidates to the provider of
the route's primary deployment (the one a prefix forced, else the first in
failover order). Failover then moves only between that provider's deployments
and the key never reaches another provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gateway_common.catalog import BreakerPolicy, Catalog, Deployment, ModelEntry, Resilience
from gateway_common.errors import InvalidRequest, ModelNotFound
from gateway_common.pricing import PriceIndex

from .providers.base import ProviderAdapter

__all__ = ["Candidate", "Route", "RoutingTable", "priority", "split_provider"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model, with the adapter that reaches it.

    ``key`` is ``provider/deployment``, the name an attempt's error, breaker,
    in-flight count and metrics are filed under. ``breaker``: the provider's
    breaker settings (``None``: the route's). ``upstream``: the custom base
    URL a managed credential moved this candidate to (``router.upstreams``).
    """

    provider: str
    deployment: Deployment
    adapter: ProviderAdapter
    breaker: BreakerPolicy | None = None
    upstream: str | None = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider}/{self.deployment.id}")

    @property
    def provider_model(self) -> str:
        return self.deployment.model


def priority(item: tuple[int, Candidate]) -> int:
    """The failover group of the ``index``-th candidate: its ``priority``, else its position."""
    index, candidate = item
    value = candidate.deployment.priority
    return index if value is None else value


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved model: its public name, catalog entry, candidates in catalog order, and
    the catalog's failure-handling policy (``router.balancer`` decides the order tried)."""

    model: str
    entry: ModelEntry
    candidates: tuple[Candidate, ...]
    policy: Resilience = field(default_factory=Resilience)

    def one_provider(self) -> Route:
        """This route narrowed to the provider of its primary deployment (for BYOK calls).

        The primary is the first candidate of the lowest priority group, i.e.
        the deployment failover tries first when nothing is loaded or broken.
        The other deployments of that provider stay, in their order.
        """
        _, primary = min(enumerate(self.candidates), key=priority)
        kept = tuple(c for c in self.candidates if c.provider == primary.provider)
        return self if len(kept) == len(self.candidates) else replace(self, candidates=kept)


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
    """An immutable snapshot: a validated catalog, one adapter per provider, and the
    catalog's prices (the ``PriceIndex`` billing builds from the same file).

    Resolved routes are remembered per model string (``Route`` is immutable), so
    a call does not rebuild its candidates or scan aliases; only strings that
    resolve are kept, and those are bounded by the catalog.
    """

    catalog: Catalog
    adapters: Mapping[str, ProviderAdapter]
    prices: PriceIndex = field(init=False, repr=False, compare=False)
    _routes: dict[str, Route] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", PriceIndex(self.catalog))

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises ``ModelNotFound`` for an unknown model or provider."""
        route = self._routes.get(model)
        if route is None:
            route = self._routes[model] = self._resolve(model)
        return route

    def own(self, model: str, provider: str) -> Route:
        """A route of one candidate sending ``model`` verbatim to catalog ``provider`` (a
        gateway's own endpoint: ``router.upstreams`` moves it to the credential's base URL).

        Not remembered: the model string is the caller's, not bounded by the catalog.
        Raises ``InvalidRequest`` when ``provider`` is not in the catalog.
        """
        if provider not in self.catalog.providers:
            raise InvalidRequest(f"The credential's provider `{provider}` is not configured.")
        deployment = Deployment(provider=provider, model=model)
        entry = ModelEntry(deployments=[deployment], owned_by=provider)
        candidate = Candidate(
            provider, deployment, self.adapters[provider], self.catalog.breaker_policy(provider)
        )
        return Route(model, entry, (candidate,), self.catalog.resilience)

    def _resolve(self, model: str) -> Route:
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
            Candidate(
                dep.provider,
                dep,
                self.adapters[dep.provider],
                self.catalog.breaker_policy(dep.provider),
            )
            for dep in entry.deployments
            if only_provider is None or dep.provider == only_provider
        )
        if not candidates:
            raise _not_found(model)
        return Route(public, entry, candidates, self.catalog.resilience)
