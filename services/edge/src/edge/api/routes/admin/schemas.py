"""Request and response bodies of the admin API (what its OpenAPI document shows)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ....auth import Scope
from ....pipeline.ratelimit import RateLimits
from ....store import (
    ApiKeyPublic,
    EndpointPublic,
    ProjectPublic,
    ProjectType,
    ProviderCredentialPublic,
)
from ....store.models import checked_allowed_models

__all__ = [
    "CredentialCreate",
    "CredentialList",
    "EndpointList",
    "KeyCreate",
    "KeyCreated",
    "KeyList",
    "KeyUpdate",
    "ProjectCreate",
    "ProjectList",
    "ProjectUpdate",
    "RewrapResult",
]

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_RATE_LIMITS = (
    'Requests and tokens per window, e.g. {"per_minute": 60, "per_day": 10000, '
    '"tokens_per_minute": 90000} (each optional, integers >= 1); null: no limit.'
)
_ALLOWED_MODELS = (
    "Catalog models (names or aliases) this key may call; another model is refused "
    "with 403 model_not_allowed. Null: every model."
)


def stored_limits(limits: RateLimits | None) -> dict[str, Any] | None:
    """``rate_limits`` as the column stores them (None when no limit is set)."""
    if limits is None:
        return None
    return limits.model_dump(exclude_none=True) or None


class _AllowedModels(_Body):
    @field_validator("allowed_models", mode="before", check_fields=False)
    @classmethod
    def _models(cls, value: Any) -> list[str] | None:
        return checked_allowed_models(value)


class ProjectCreate(_Body):
    """``POST /admin/projects``."""

    name: str = Field(min_length=1, max_length=200, description="Unique name.")
    type: ProjectType = Field(default="ai_gateway", description="ai_gateway or channel.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Free-form options.")
    rate_limits: RateLimits | None = Field(
        default=None, description="Shared by every key of the project. " + _RATE_LIMITS
    )


class ProjectUpdate(_Body):
    """``PATCH /admin/projects/{id}``: fields left out keep their value; settings are replaced;
    ``rate_limits`` is replaced (null removes every limit)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None
    rate_limits: RateLimits | None = Field(default=None, description=_RATE_LIMITS)


class ProjectList(BaseModel):
    data: list[ProjectPublic]


class KeyCreate(_AllowedModels):
    """``POST /admin/projects/{id}/keys``: at most one of ``expires_in`` / ``expires_at``."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    scopes: list[Scope] = Field(
        min_length=1,
        description="chat, embeddings, responses, admin, collections:read, collections:write.",
    )
    expires_in: int | None = Field(
        default=None, gt=0, le=10 * 366 * 86400, description="Validity period in seconds."
    )
    expires_at: datetime | None = Field(default=None, description="Expiry instant (with zone).")
    rate_limits: RateLimits | None = Field(default=None, description=_RATE_LIMITS)
    allowed_models: list[str] | None = Field(default=None, description=_ALLOWED_MODELS)

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes))

    @field_validator("expires_at")
    @classmethod
    def _aware_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must carry a time zone")
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_in is not None and self.expires_at is not None:
            raise ValueError("give expires_in or expires_at, not both")
        return self

    def expiry(self, now: datetime) -> datetime | None:
        """When the key stops working, or ``None`` for never."""
        if self.expires_in is not None:
            return now + timedelta(seconds=self.expires_in)
        return self.expires_at


class KeyUpdate(_AllowedModels):
    """``PATCH /admin/projects/{id}/keys/{key_id}``: fields left out keep their value; a
    field sent replaces it (``null`` removes the limits, or allows every model)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    rate_limits: RateLimits | None = Field(default=None, description=_RATE_LIMITS)
    allowed_models: list[str] | None = Field(default=None, description=_ALLOWED_MODELS)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("a key keeps a name; it cannot be null")
        return value


class KeyCreated(ApiKeyPublic):
    """A new key: the only answer that ever carries the full ``key``. Store it now."""

    key: str


class KeyList(BaseModel):
    data: list[ApiKeyPublic]


class CredentialCreate(_Body):
    """``POST /admin/projects/{id}/credentials``: replaces the project's key for ``provider``."""

    provider: str = Field(description="Catalog provider name, e.g. openai.")
    api_key: SecretStr = Field(min_length=1, max_length=4096)
    base_url: str | None = Field(
        default=None, max_length=2000, description="Custom upstream; refused if not public."
    )

    @field_validator("provider")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        if not _PROVIDER.fullmatch(value):
            raise ValueError("must be lower-case letters, digits, '_', '.' or '-'")
        return value


class CredentialList(BaseModel):
    data: list[ProviderCredentialPublic]


class RewrapResult(BaseModel):
    """``POST /admin/credentials/rewrap``."""

    key_id: str = Field(description="Id of the current sealing key.")
    rewrapped: int = Field(description="Credentials re-sealed under it.")
    unchanged: int = Field(description="Credentials already sealed under it.")
    unreadable: list[str] = Field(description="Ids no configured secret opens (left as they were).")


class EndpointList(BaseModel):
    """``GET /admin/projects/{id}/endpoints`` (bodies of create and update: ``store.EndpointCreate``,
    ``store.EndpointUpdate``)."""

    data: list[EndpointPublic]
