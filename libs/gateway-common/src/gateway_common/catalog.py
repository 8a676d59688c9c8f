"""The model catalog: one versioned YAML file, parsed into frozen pydantic models.

The router routes from it; billing prices from it. The file is the same one
whether it sits in ``config/catalog.yaml`` or is mounted from a ConfigMap.
Parsing is two-phase: ``parse_catalog`` validates the document (unknown
fields are refused, cross references are checked) and returns a ``Catalog``;
runtime objects (HTTP clients, adapters) are built from it by the router.

Secrets are never in this file: a provider names the environment variable
that holds its key (``api_key_env``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BreakerPolicy",
    "Capability",
    "Catalog",
    "CatalogError",
    "CatalogFile",
    "DatedPrices",
    "DatedSkuPrice",
    "Deployment",
    "ModelEntry",
    "Prices",
    "ProviderEntry",
    "Resilience",
    "RetryBudgetPolicy",
    "RetryPolicy",
    "SkuEntry",
    "Tokenizer",
    "load_catalog",
    "parse_catalog",
    "split_provider",
]

#: What ``ModelEntry.tokenizer`` may name: a shipped encoding, or the estimate.
Tokenizer = Literal["o200k_base", "cl100k_base", "estimate"]
#: ``reasoning``: the model takes OpenAI's ``reasoning_effort`` (the Messages surface maps
#: Anthropic's ``thinking`` onto it for such models, ``edge.anthropic.inbound``).
Capability = Literal["chat", "responses", "embeddings", "tools", "vision", "streaming", "reasoning"]
_DEFAULT_CAPABILITIES: tuple[Capability, ...] = ("chat", "streaming")


class CatalogError(ValueError):
    """The catalog file is unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerPolicy(_Strict):
    """When a deployment's circuit breaker opens and how it probes for recovery.

    The catalog-wide one is ``resilience.breaker``; a provider's ``breaker``
    block overrides the fields it sets for that provider's deployments
    (``Catalog.breaker_policy``).
    """

    consecutive_failures: int = Field(
        default=5, ge=1, description="Retryable failures in a row that open the breaker."
    )
    failure_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of failed calls within ``window_s`` that opens the breaker.",
    )
    min_calls: int = Field(
        default=20, ge=1, description="Calls within ``window_s`` before ``failure_rate`` applies."
    )
    window_s: float = Field(default=30.0, gt=0, description="Window of the failure rate.")
    cooldown_s: float = Field(
        default=10.0, gt=0, description="Open time before one probe call is let through."
    )


class ProviderEntry(_Strict):
    """A provider endpoint: what speaks to it and where it lives."""

    kind: Literal["openai", "azure_openai", "anthropic", "gemini"] = Field(
        description="Wire format / adapter that talks to this provider."
    )
    base_url: str = Field(description="Base URL up to and including the API version, e.g. .../v1.")
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable that holds the provider key (never the key).",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(default=60.0, gt=0, description="Max wait between bytes.")
    max_connections: int = Field(default=256, gt=0, description="Connection pool size.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra non-secret headers.")
    api_version: str | None = Field(
        default=None,
        description="Azure OpenAI only, and required there: the api-version query parameter "
        "sent on every call (e.g. 2024-10-21).",
    )
    breaker: BreakerPolicy | None = Field(
        default=None,
        description=(
            "Circuit-breaker settings for this provider's deployments (and for the custom base "
            "URLs of managed credentials of this provider). Each field set here overrides "
            "``resilience.breaker``; the fields left out keep the catalog-wide values."
        ),
    )
    byok_passthrough: bool = Field(
        default=False,
        description=(
            "When true, a request whose bearer is not a gateway key and whose model is served "
            "only by passthrough providers (or forced onto this one by a provider prefix) is "
            "forwarded with that bearer as the provider key. "
            "Such calls belong to no project: they are billed as BYOK to the synthetic project "
            "byok-passthrough, with no budget checks, and never use managed credentials."
        ),
    )

    @model_validator(mode="after")
    def _azure_api_version(self) -> ProviderEntry:
        if (self.kind == "azure_openai") != (self.api_version is not None):
            raise ValueError("api_version is required for kind azure_openai and only for it")
        return self

    def same_client(self, other: ProviderEntry) -> bool:
        """Whether a client built for ``other`` serves this entry too: they differ at most in
        ``breaker`` (a router keeps the client, and its warm pool, across such a change)."""
        if self == other:
            return True
        return self.model_dump(exclude={"breaker"}) == other.model_dump(exclude={"breaker"})


class Deployment(_Strict):
    """One place a model can be served: a provider plus the model name it knows."""

    provider: str = Field(description="Key into ``providers``.")
    model: str = Field(description="Model name as the provider knows it.")
    name: str | None = Field(default=None, description="Deployment id; default provider/model.")
    weight: int = Field(default=1, ge=0, description="Load-balancing weight among equals.")
    priority: int | None = Field(
        default=None,
        description=(
            "Failover group, lowest first; deployments sharing a priority are load-balanced "
            "(weighted, least in flight). Unset: the deployment's position in the list."
        ),
    )

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class Prices(_Strict):
    """Prices per token, exact decimals (write them as strings in YAML)."""

    input: Decimal = Field(default=Decimal(0), ge=0, description="Per prompt token.")
    output: Decimal = Field(default=Decimal(0), ge=0, description="Per completion token.")
    cached_input: Decimal | None = Field(
        default=None, ge=0, description="Per cached prompt token; default: the input price."
    )
    reasoning: Decimal | None = Field(
        default=None, ge=0, description="Per reasoning token; default: the output price."
    )
    cache_write: Decimal | None = Field(
        default=None,
        ge=0,
        description=(
            "Per prompt token written to the provider's prompt cache (Anthropic's "
            "cache_creation_input_tokens); default: the input price."
        ),
    )


class DatedPrices(_Strict):
    """A price change: ``prices`` apply to usage that occurs at or after ``effective_from``."""

    effective_from: datetime = Field(description="Timezone-aware start, e.g. 2026-01-01T00:00:00Z.")
    prices: Prices


class DatedSkuPrice(_Strict):
    """A price change of an extra SKU, effective from ``effective_from`` on."""

    effective_from: datetime = Field(description="Timezone-aware start, e.g. 2026-01-01T00:00:00Z.")
    unit_price: Decimal = Field(ge=0, description="Per unit of the SKU.")


def _check_history(history: list[DatedPrices] | list[DatedSkuPrice]) -> None:
    starts = [change.effective_from for change in history]
    if any(start.tzinfo is None for start in starts):
        raise ValueError("effective_from must carry a timezone (e.g. a trailing Z)")
    if any(later <= earlier for earlier, later in pairwise(starts)):
        raise ValueError("effective_from must increase strictly down the history")


class SkuEntry(_Strict):
    """A billable unit beyond a model's tokens (routing inference, retrieval, ...)."""

    unit_price: Decimal = Field(ge=0, description="Per unit, before any history entry applies.")
    description: str = Field(
        description="Shown on the line item, e.g. 'Inference for model routing'."
    )
    prices_history: list[DatedSkuPrice] = Field(
        default_factory=list, description="Later price changes, oldest first."
    )

    @model_validator(mode="after")
    def _history(self) -> SkuEntry:
        _check_history(self.prices_history)
        return self


class ModelEntry(_Strict):
    """A public model: its name, aliases, where it is served, what it costs and can do."""

    aliases: list[str] = Field(default_factory=list, description="Other public names.")
    deployments: list[Deployment] = Field(min_length=1, description="Tried in order on failure.")
    prices: Prices = Field(
        default_factory=Prices, description="In effect before the first history entry."
    )
    prices_history: list[DatedPrices] = Field(
        default_factory=list,
        description=(
            "Later price changes, oldest first; usage is priced at the entry in effect at its "
            "occurred_at. Add a change ahead of its date so every reader has it in time."
        ),
    )
    context_window: int = Field(
        default=0,
        ge=0,
        description=(
            "Max prompt + completion tokens; 0 if unknown (then no prompt is refused for its "
            "length before the provider sees it)."
        ),
    )
    max_output_tokens: int = Field(default=0, ge=0)
    speed_tps: int = Field(
        default=0,
        ge=0,
        description=(
            "Typical output tokens per second, as seed 003's model table shows it "
            "('~180 TPS'); a figure for display, never used to route. 0 if unknown."
        ),
    )
    best_for: str = Field(
        default="",
        max_length=200,
        description=(
            "What the model suits, in a few words, as seed 003's 'Best For' column shows it "
            "('General purpose, reasoning'); for display, never used to route. '' if unstated."
        ),
    )
    tokenizer: Tokenizer | None = Field(
        default=None,
        description=(
            "The encoding that counts this model's prompts against context_window "
            "(gateway_common.tokens): o200k_base or cl100k_base, or 'estimate' for the "
            "documented estimate. Unset: tiktoken's model table names it for OpenAI "
            "deployments, every other model is estimated."
        ),
    )
    capabilities: list[Capability] = Field(default_factory=lambda: list(_DEFAULT_CAPABILITIES))
    owned_by: str = Field(default="switchyard")

    @model_validator(mode="after")
    def _history(self) -> ModelEntry:
        _check_history(self.prices_history)
        return self


class RetryPolicy(_Strict):
    """How often one call may try again, and how long it waits before it does."""

    passes: int = Field(
        default=2,
        ge=1,
        description=(
            "Passes over a model's deployments; each pass after the first retries, after a "
            "backoff, the deployments that failed with a retryable error. 1: failover only."
        ),
    )
    backoff_s: float = Field(
        default=0.25, ge=0, description="Backoff before the second pass; doubles per pass."
    )
    max_backoff_s: float = Field(default=2.0, ge=0, description="Cap of one backoff.")
    max_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="Longest Retry-After a call waits for; a longer one skips that deployment.",
    )


class RetryBudgetPolicy(_Strict):
    """Bound on retries per router replica, so that an outage cannot cause a retry storm."""

    ratio: float = Field(
        default=0.2, ge=0, description="Retries allowed per call, over ``window_s``."
    )
    min_per_s: float = Field(
        default=10.0, ge=0, description="Retries per second always allowed (low traffic)."
    )
    window_s: float = Field(default=10.0, gt=0, description="Window the budget is counted over.")


class Resilience(_Strict):
    """Circuit breaking, retries and the retry budget (router only; defaults suit most)."""

    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    retry_budget: RetryBudgetPolicy = Field(default_factory=RetryBudgetPolicy)


class Catalog(_Strict):
    """The whole catalog document."""

    version: Literal[1] = Field(description="Schema version of this file.")
    providers: dict[str, ProviderEntry]
    models: dict[str, ModelEntry]
    resilience: Resilience = Field(
        default_factory=Resilience, description="Failure handling of the router."
    )
    skus: dict[str, SkuEntry] = Field(
        default_factory=dict, description="Extra SKUs by name, e.g. inference.resolving.*.in."
    )

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        seen: dict[str, str] = {}
        for name, model in self.models.items():
            for dep in model.deployments:
                if dep.provider not in self.providers:
                    raise ValueError(f"models.{name}: unknown provider {dep.provider!r}")
            for public in (name, *model.aliases):
                if public in seen:
                    raise ValueError(
                        f"models.{name}: name {public!r} already used by {seen[public]}"
                    )
                seen[public] = name
        return self

    def breaker_policy(self, provider: str) -> BreakerPolicy:
        """The breaker settings of ``provider``'s deployments: ``resilience.breaker`` with the
        fields the provider's ``breaker`` block sets replaced by its values."""
        override = self.providers[provider].breaker
        default = self.resilience.breaker
        if override is None or not override.model_fields_set:
            return default
        return default.model_copy(
            update={name: getattr(override, name) for name in override.model_fields_set}
        )

    def resolve(self, name: str) -> tuple[str, ModelEntry] | None:
        """Find a model by public name or alias; ``None`` when unknown."""
        if name in self.models:
            return name, self.models[name]
        for public, model in self.models.items():
            if name in model.aliases:
                return public, model
        return None


def parse_catalog(text: str, *, source: str = "<catalog>") -> Catalog:
    """Validate a catalog document; raise ``CatalogError`` naming the bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {exc}") from exc


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalog file at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc
    return parse_catalog(text, source=str(path))


def split_provider(model: str) -> tuple[str, str] | None:
    """``"openai:gpt-4o"`` or ``"@openai/gpt-4o"`` -> ``("openai", "gpt-4o")``; else ``None``.

    The explicit provider prefixes a request may put on a model name (seeds 004 and 002);
    whether the provider exists is the caller's question.
    """
    if model.startswith("@"):
        provider, sep, name = model[1:].partition("/")
    else:
        provider, sep, name = model.partition(":")
    return (provider, name) if sep and provider and name else None


T = TypeVar("T")
_log = logging.getLogger(__name__)


class CatalogFile(Generic[T]):
    """A catalog file and what a service builds from it, re-built when the file changes.

    ``build`` turns a validated ``Catalog`` into the service's view of it (a price
    index, a routing snapshot). Construction reads the file and raises
    ``CatalogError`` if it is unusable. Afterwards ``current()`` checks the file's
    modification time at most every ``check_interval_s`` seconds (``force=True``
    checks now, e.g. for a model the loaded view lacks); a file that no longer
    parses is logged once per version and the previous view stays in force.
    """

    def __init__(
        self,
        path: Path,
        build: Callable[[Catalog], T],
        *,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._build = build
        self._interval = check_interval_s
        self._clock = clock
        try:
            self._mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read: {exc}") from exc
        self._value = build(load_catalog(path))
        self._next_check = clock() + check_interval_s

    @property
    def path(self) -> Path:
        return self._path

    def current(self, *, force: bool = False) -> T:
        """The view of the newest valid version of the file."""
        now = self._clock()
        if force or now >= self._next_check:
            self._reload_if_changed(now)
        return self._value

    def _reload_if_changed(self, now: float) -> None:
        self._next_check = now + self._interval
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError as exc:
            _log.warning("catalog %s: cannot stat (%s); keeping the loaded one", self._path, exc)
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime  # also for a bad file: report each version once, not every check
        try:
            self._value = self._build(load_catalog(self._path))
        except CatalogError as exc:
            _log.error("catalog reload failed; keeping the previous one: %s", exc)
            return
        _log.info("catalog %s reloaded", self._path)
