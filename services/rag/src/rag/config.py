"""Rag settings: environment variables ``RAG_*`` plus the shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["RagSettings"]


class RagSettings(BaseServiceSettings):
    """Configuration of the rag service (``RAG_`` prefix; shared names unprefixed)."""

    model_config = SettingsConfigDict(env_prefix="RAG_")

    service_name: str = Field(
        default="rag",
        description="Name in logs, traces and metrics; also names the default SQLite file.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener (RAG_METRICS_PORT); 0 disables.",
    )
