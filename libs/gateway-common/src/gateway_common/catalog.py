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

from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Capability",
    "Catalog",
    "CatalogError",
    "Deployment",
    "ModelEntry",
    "Prices",
    "ProviderEntry",
    "load_catalog",
    "parse_catalog",
]

Capability = Literal["chat", "responses", "embeddings", "tools", "vision", "streaming"]


class CatalogError(ValueError):
    """The catalog file is unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Deployment(_Strict):
    """One place a model can be served: a provider plus the model name it knows."""

    provider: str = Field(description="Key into ``providers``.")
    model: str = Field(description="Model name as the provider knows it.")
    name: str | None = Field(default=None, description="Deployment id; default provider/model.")
    weight: int = Field(default=1, ge=0, description="Load-balancing weight among equals.")

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


class ModelEntry(_Strict):
    """A public model: its name, aliases, where it is served, what it costs and can do."""

    aliases: list[str] = Field(default_factory=list, description="Other public names.")
    deployments: list[Deployment] = Field(min_length=1, description="Tried in order on failure.")
    prices: Prices = Field(default_factory=Prices)
    context_window: int = Field(default=0, ge=0)
    max_output_tokens: int = Field(default=0, ge=0)
    capabilities: list[Capability] = Field(default_factory=lambda: ["chat", "streaming"])
    owned_by: str = Field(default="switchyard")


class Catalog(_Strict):
    """The whole catalog document."""

    version: Literal[1] = Field(description="Schema version of this file.")
    providers: dict[str, ProviderEntry]
    models: dict[str, ModelEntry]

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
