"""Router settings (environment, prefix ``ROUTER_``), built once by ``__main__``.

Shared fields (``NATS_URL``, ``GATEWAY_LOG_LEVEL``, ...) come from
``BaseServiceSettings``. The model catalog itself is a file
(``ROUTER_CATALOG_PATH``), parsed by ``gateway_common.catalog`` and reloaded
by ``router.catalog.LiveCatalog`` when it changes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["RouterSettings"]


class RouterSettings(BaseServiceSettings):
    """Everything the router reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", populate_by_name=True)

    service_name: str = Field(
        default="router", description="Name used in logs, traces and metrics."
    )
    host: str = Field(default="127.0.0.1", description="Interface the gRPC server binds.")
    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0: any free port).")
    catalog_path: Path = Field(
        default=Path("config/catalog.yaml"),
        description="Model catalog file (schema: gateway_common.catalog); reloaded on change.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener on ``host``; 0 disables it.",
    )
    shutdown_grace_s: float = Field(
        default=55.0,
        gt=0,
        description=(
            "ROUTER_SHUTDOWN_GRACE_S: after SIGTERM (health already NOT_SERVING, new calls "
            "refused), how long in-flight calls and streams may run on; their usage events "
            "are published before they end. Keep it below the pod's grace period."
        ),
    )
    usage_publish_window_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "ROUTER_USAGE_PUBLISH_WINDOW_S: how long a usage publish is retried (same "
            "Nats-Msg-Id) before its event goes to the local outbox."
        ),
    )
    usage_flush_grace_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "ROUTER_USAGE_FLUSH_GRACE_S: after SIGTERM, once the gRPC server has stopped, the "
            "last replay of the outbox to NATS may run this long plus whatever the in-flight "
            "calls left unused of ROUTER_SHUTDOWN_GRACE_S; events NATS still did not take stay "
            "in the file (replayed when a router starts on it again). Keep preStop + "
            "ROUTER_SHUTDOWN_GRACE_S + this below the pod's grace period (5 + 55 + 10 < 75)."
        ),
    )
    usage_ack_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="ROUTER_USAGE_ACK_TIMEOUT_S: wait for one usage publish's JetStream ack.",
    )
    usage_outbox_path: Path | None = Field(
        default=None,
        description=(
            "ROUTER_USAGE_OUTBOX_PATH: the outbox's SQLite file (usage events NATS did not "
            "acknowledge, replayed when it answers); default <GATEWAY_DATA_DIR>/router-outbox.db."
        ),
    )
    catalog_poll_s: float = Field(
        default=2.0, gt=0, description="Seconds between checks of the catalog file for changes."
    )
    allow_private_upstreams: bool = Field(
        default=False,
        description=(
            "ROUTER_ALLOW_PRIVATE_UPSTREAMS: let managed credentials' custom base URLs reach "
            "loopback, private or link-local addresses (the dev stack's fake provider). Cloud "
            "metadata addresses stay refused. Checked on every call that uses such a URL."
        ),
    )
