"""Service settings: one pydantic-settings class per service, built once in ``main``.

``BaseServiceSettings`` holds what every service reads. Names follow the
operator contract (docs/architecture.md): ``NATS_URL``,
``GATEWAY_DATABASE_URL``, ``GATEWAY_DATA_DIR``, ``GATEWAY_LOG_LEVEL``,
``OTEL_EXPORTER_OTLP_ENDPOINT``. Each service subclasses it with its own
``env_prefix`` for its own fields. Nothing here is read at import time:
settings exist only once a ``main`` instantiates them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_NATS_URL", "BaseServiceSettings"]

#: Where ``make run``'s embedded nats-server listens (never 4222, the system NATS).
DEFAULT_NATS_URL = "nats://127.0.0.1:14222"


class BaseServiceSettings(BaseSettings):
    """Fields shared by every service."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = Field(
        default="switchyard", description="Name used in logs, traces, metrics and durable names."
    )
    nats_url: str = Field(
        default=DEFAULT_NATS_URL,
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="NATS server(s), comma separated. JetStream must be enabled.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GATEWAY_DATABASE_URL", "database_url"),
        description=(
            "SQLAlchemy URL (postgresql+psycopg://... or sqlite+aiosqlite:///...). "
            "Unset: a SQLite file per service under the data dir."
        ),
    )
    data_dir: Path = Field(
        default=Path(".data"),
        validation_alias=AliasChoices("GATEWAY_DATA_DIR", "data_dir"),
        description="Directory for embedded defaults (SQLite files, NATS store).",
    )
    log_level: str = Field(
        default="INFO",
        validation_alias=AliasChoices("GATEWAY_LOG_LEVEL", "log_level"),
        description="Python logging level name.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint"),
        description=(
            "OTLP collector endpoint. Tracing follows the standard OTEL_* variables "
            "(telemetry.tracing_enabled): off when none of them is set."
        ),
    )
    log_prompts: bool = Field(
        default=False,
        validation_alias=AliasChoices("GATEWAY_LOG_PROMPTS", "log_prompts"),
        description="Log prompt and completion text (debugging only; redacted by default).",
    )
    metrics_port: int = Field(
        default=0,
        description="Port of this service's Prometheus /metrics listener; 0 disables it.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Interface the /metrics listener binds (0.0.0.0 inside a pod).",
    )
    migrate_on_start: bool = Field(
        default=True,
        validation_alias=AliasChoices("GATEWAY_MIGRATE_ON_START", "migrate_on_start"),
        description=(
            "Upgrade this service's tables at start-up. False where a Job runs "
            "``python -m <service> migrate`` once per rollout (deploy/k8s): the service "
            "then waits up to ``migrate_wait_s`` for the schema to reach head instead."
        ),
    )
    migrate_wait_s: float = Field(
        default=300.0,
        gt=0,
        validation_alias=AliasChoices("GATEWAY_MIGRATE_WAIT_S", "migrate_wait_s"),
        description="How long a service without migrate_on_start waits for the schema at head.",
    )
    nats_stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("NATS_STREAM_REPLICAS", "nats_stream_replicas"),
        description=(
            "Replicas of every JetStream stream the services declare: 1 on a single "
            "nats-server, 3 on the 3-node cluster of deploy/k8s (R3: a write is acked "
            "once a majority stored it)."
        ),
    )

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("NATS_URL is empty")
        return ",".join(s if "://" in s else f"nats://{s}" for s in servers)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept plain ``postgresql://``/``sqlite://`` URLs and pick the async driver."""
        if not value:
            return None
        for plain, driver in (
            ("postgresql://", "postgresql+psycopg://"),
            ("postgres://", "postgresql+psycopg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value[len(plain) :]
        return value

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, else ``<data_dir>/<service>.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').resolve()}"
