"""Settings of the dev fake provider (env prefix ``FAKE_PROVIDER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["FakeProviderSettings"]


class FakeProviderSettings(BaseSettings):
    """Where the fake listens and how much it remembers."""

    model_config = SettingsConfigDict(env_prefix="FAKE_PROVIDER_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to bind (loopback only in dev).")
    port: int = Field(default=8090, ge=0, le=65535, description="TCP port to listen on.")
    history: int = Field(
        default=1000, gt=0, description="How many recent requests GET /_fake/requests keeps."
    )
