"""Billing settings: environment variables ``BILLING_*`` plus the shared ones.

Built once by ``billing.main`` and passed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["BillingSettings"]


class BillingSettings(BaseServiceSettings):
    """Configuration of the billing service (``BILLING_`` prefix; shared names unprefixed)."""

    model_config = SettingsConfigDict(env_prefix="BILLING_")

    service_name: str = Field(
        default="billing",
        description="Name in logs, traces and metrics; also names the default SQLite file.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener (BILLING_METRICS_PORT); 0 disables.",
    )
    catalog_path: Path = Field(
        default=Path("config/catalog.yaml"),
        description=(
            "Model catalog whose prices billing applies (BILLING_CATALOG_PATH); the same file "
            "the router routes from. Re-read when its modification time changes."
        ),
    )
    batch_size: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description=(
            "Most usage messages fetched and billed in one transaction (BILLING_BATCH_SIZE); "
            "a fetch takes what is ready, so under light load batches are smaller."
        ),
    )
    batch_linger_s: float = Field(
        default=0.05,
        ge=0,
        le=5.0,
        description=(
            "Seconds billing waits after a batch smaller than BILLING_BATCH_SIZE before it "
            "fetches again (BILLING_BATCH_LINGER_S), so a light steady load is still billed "
            "in batches; each usage event reaches the ledger up to this much later. 0 = no wait."
        ),
    )
    ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds before JetStream redelivers a usage message fetched but never acked, e.g. "
            "by a crashed replica (BILLING_ACK_WAIT_S); redelivery is harmless, only slower."
        ),
    )
    lease_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an edge may admit requests under a budget lease (BILLING_LEASE_TTL_S).",
    )
    lease_settle_s: float = Field(
        default=330.0,
        ge=0,
        description=(
            "Seconds a lease keeps holding budget after its TTL, until what was admitted under it "
            "is billed (BILLING_LEASE_SETTLE_S): longer than the longest request "
            "(GATEWAY_REQUEST_TIMEOUT_S) plus the billing lag."
        ),
    )
    reaper_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between passes of the lease reaper (BILLING_REAPER_INTERVAL_S).",
    )
