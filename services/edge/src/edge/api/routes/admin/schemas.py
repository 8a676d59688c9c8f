"""Request and response bodies of the admin API (what its OpenAPI document shows)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ....auth import Scope
from ....store import (
    ApiKeyPublic,
    EndpointPublic,
    ProjectPublic,
    ProjectType,
    ProviderCredentialPublic,
)

__all__ = [
    "CredentialCreate",
    "CredentialList",
    "EndpointList",
    "KeyCreate",
    "KeyCreated",
    "KeyList",
    "ProjectCreate",
    "ProjectList",
    "ProjectUpdate",
    "RewrapResult",
]

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Body):
    """``POST /admin/projects``."""

    name: str = Field(min_length=1, max_length=200, description="Unique name.")
    type: ProjectType = Field(default="ai_gateway", description="ai_gateway or channel.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Free-form options.")


class ProjectUpdate(_Body):
    """``PATCH /admin/projects/{id}``: fields left out keep their value; settings are replaced."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None


class ProjectList(BaseModel):
    data: list[ProjectPublic]


class KeyCreate(_Body):
    """``POST /admin/projects/{id}/keys``: at most one of ``expires_in`` / ``expires_at``."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    scopes: list[Scope] = Field(min_length=1, description="chat, embeddings, responses, admin.")
    expires_in: int | None = Field(
        default=None, gt=0, le=10 * 366 * 86400, description="Validity period in seconds."
    )
    expires_at: datetime | None = Field(default=None, description="Expiry instant (with zone).")

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
