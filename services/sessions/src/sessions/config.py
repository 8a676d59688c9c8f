"""Sessions settings: environment variables ``SESSIONS_*`` plus the shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["SessionsSettings"]


class SessionsSettings(BaseServiceSettings):
    """Configuration of the sessions service (``SESSIONS_`` prefix; shared names unprefixed)."""

    model_config = SettingsConfigDict(env_prefix="SESSIONS_")

    service_name: str = Field(
        default="sessions",
        description="Name in logs, traces and metrics; also names the default SQLite file.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics listener (SESSIONS_METRICS_PORT); 0 disables.",
    )
    history_ttl_s: int = Field(
        default=86_400,
        gt=0,
        description=(
            "SESSIONS_HISTORY_TTL_S: time to live, in seconds, of stored responses (default 24 h; "
            "OpenAI keeps stored responses 30 days = 2592000): rows get expires_at = created_at "
            "+ this, are invisible to reads after it and purged. Also the idle time to live of a "
            "conversation session whose caller names none (ttl_seconds)."
        ),
    )
    history_tombstone_s: int = Field(
        default=7 * 86_400,
        ge=0,
        description=(
            "SESSIONS_HISTORY_TOMBSTONE_S: how long an expired session's id keeps answering "
            "'expired' (so the edge starts afresh) before it is forgotten and answers "
            "'not_found' (default 7 days). Its turns are deleted at expiry; the tombstone "
            "holds ids and times only."
        ),
    )
    reaper_interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "SESSIONS_REAPER_INTERVAL_S: seconds between passes of the reaper that deletes "
            "expired stored responses and expired sessions' turns (reads already ignore them)."
        ),
    )
