"""Edge settings: ``EdgeSettings``, read from ``GATEWAY_*`` variables once, in ``__main__``.

Shared fields (NATS, database, logging, tracing) come from
``BaseServiceSettings``; the names are the operator contract in
docs/architecture.md. The instance is passed down explicitly to
``create_app``; no module reads the environment.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from gateway_common.settings import BaseServiceSettings

__all__ = ["DEV_SECRET_KEY", "EdgeSettings"]

#: Placeholder HMAC key for development. Refused when ``GATEWAY_ENV=production``.
DEV_SECRET_KEY = "switchyard-dev-secret-key-change-me"


class EdgeSettings(BaseServiceSettings):
    """Configuration of the edge (public HTTP) service."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    service_name: str = Field(
        default="edge", description="Name used in logs, traces, metrics and the SQLite file name."
    )
    env: Literal["dev", "production"] = Field(
        default="dev",
        description="GATEWAY_ENV. 'production' refuses development placeholders (secret_key).",
    )
    host: str = Field(default="127.0.0.1", description="GATEWAY_HOST: interface to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="GATEWAY_PORT: HTTP port.")
    admin_token: SecretStr | None = Field(
        default=None, description="GATEWAY_ADMIN_TOKEN: bearer token accepted by the admin API."
    )
    dev_api_key: SecretStr | None = Field(
        default=None,
        description="GATEWAY_DEV_API_KEY: key that `python -m edge ensure-dev-key` provisions.",
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY),
        description=(
            "GATEWAY_SECRET_KEY: HMAC-SHA256 key for API-key hashes. Changing it invalidates "
            "every stored key. The dev default is refused in production."
        ),
    )
    router_addr: str = Field(
        default="127.0.0.1:50051", description="GATEWAY_ROUTER_ADDR: router gRPC host:port."
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="GATEWAY_REQUEST_TIMEOUT_S: deadline of one request, passed to the router call.",
    )
    shutdown_grace_s: float = Field(
        default=55.0,
        gt=0,
        description=(
            "GATEWAY_SHUTDOWN_GRACE_S: after SIGTERM, how long open requests and streams may "
            "run on; a stream still open then ends with an SSE error event "
            "(server_shutting_down). Keep it below the pod's terminationGracePeriodSeconds "
            "minus the preStop sleep and uvicorn's 5 s margin."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "GATEWAY_HEADER_TIMEOUT_S: a connection whose request head (request line and "
            "headers) is not complete this long after the connection or the request's first "
            "byte is answered 408 and closed (slow-loris; edge.http_protocol)."
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="GATEWAY_MAX_BODY_BYTES: larger request bodies are refused with 413.",
    )
    max_messages: int = Field(
        default=2048,
        gt=0,
        description=(
            "GATEWAY_MAX_MESSAGES: a chat request with more messages is refused with 400 "
            "(param 'messages') before it reaches the router."
        ),
    )
    key_refresh_interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "GATEWAY_KEY_REFRESH_INTERVAL_S: full key-cache reload period; a safety net "
            "behind keys.changed.v1 notifications, which reload at once."
        ),
    )

    @model_validator(mode="after")
    def _no_placeholder_in_production(self) -> EdgeSettings:
        if self.env == "production" and self.secret_key.get_secret_value() == DEV_SECRET_KEY:
            raise ValueError("GATEWAY_SECRET_KEY must be set to a real secret in production")
        return self

    # -- tenancy (issue 5) ---------------------------------------------------------------------
    previous_secret_keys: SecretStr | None = Field(
        default=None,
        description=(
            "GATEWAY_PREVIOUS_SECRET_KEYS: retired GATEWAY_SECRET_KEY values, comma separated. "
            "Managed credentials sealed under them still open, and `rewrap` re-seals them "
            "under the current key."
        ),
    )
    allow_private_upstreams: bool = Field(
        default=False,
        description=(
            "GATEWAY_ALLOW_PRIVATE_UPSTREAMS: accept credential base URLs on loopback, private "
            "or link-local addresses (the dev stack's fake provider). Cloud metadata addresses "
            "stay refused."
        ),
    )

    def previous_secrets(self) -> list[bytes]:
        """The retired secrets of ``previous_secret_keys``, in order, empty entries dropped."""
        raw = self.previous_secret_keys.get_secret_value() if self.previous_secret_keys else ""
        return [part.strip().encode() for part in raw.split(",") if part.strip()]

    # -- budgets and credits (issue 6) ---------------------------------------------------------
    catalog_path: Path = Field(
        default=Path("config/catalog.yaml"),
        description=(
            "GATEWAY_CATALOG_PATH: the model catalog the router routes from; the edge prices "
            "each request's worst case from it for budget admission. Re-read when it changes."
        ),
    )
    budget_lease_multiple: int = Field(
        default=10,
        ge=1,
        description=(
            "GATEWAY_BUDGET_LEASE_MULTIPLE: a budget lease asks billing for this many worst "
            "cases of the request that needs it (fewer round trips vs. budget idle on one edge)."
        ),
    )
    budget_lease_slice: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="GATEWAY_BUDGET_LEASE_SLICE: the least amount a budget lease asks for.",
    )
    budget_billing_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "GATEWAY_BUDGET_BILLING_TIMEOUT_S: wait for billing's lease answer; after it a "
            "budgeted project is refused with 503 (fail closed)."
        ),
    )
    rag_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "GATEWAY_RAG_TIMEOUT_S: wait for the rag service's answer (collections, documents, "
            "retrieval); after it the call is refused with 503."
        ),
    )
    budget_refusal_ttl_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "GATEWAY_BUDGET_REFUSAL_TTL_S: how long billing's 'nothing left' is reused locally "
            "before billing is asked again (a top-up or a raised budget shows after this)."
        ),
    )
    budget_fail_open_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "GATEWAY_BUDGET_FAIL_OPEN_S: while billing is unreachable, a project last seen "
            "without budgets or credits is admitted for this long before billing is asked again."
        ),
    )
    budget_default_max_output_tokens: int = Field(
        default=4096,
        gt=0,
        description=(
            "GATEWAY_BUDGET_DEFAULT_MAX_OUTPUT_TOKENS: completion tokens assumed for a request "
            "without max tokens on a model whose catalog entry states neither max_output_tokens "
            "nor context_window (the only case where the worst case is a guess)."
        ),
    )

    # -- rate limits (issue 14) ----------------------------------------------------------------
    ratelimit_timeout_s: float = Field(
        default=0.1,
        gt=0,
        description=(
            "GATEWAY_RATELIMIT_TIMEOUT_S: wait for a rate-limit counter (JetStream) to answer; "
            "after it the limit is unchecked and its kind fails open or closed."
        ),
    )
    ratelimit_fail_closed: str = Field(
        default="",
        pattern=r"^\s*((requests|tokens)\s*(,\s*(requests|tokens)\s*)*)?$",
        description=(
            "GATEWAY_RATELIMIT_FAIL_CLOSED: kinds of limit (requests, tokens; comma separated) "
            "whose calls are refused with 503 while the counters do not answer. Default: none, "
            "both kinds fail open (admitted unchecked, counted in a metric)."
        ),
    )
    ratelimit_outage_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "GATEWAY_RATELIMIT_OUTAGE_BACKOFF_S: after a counter failed to answer, no counter "
            "is asked for this long (an outage costs one timeout, not one per request)."
        ),
    )

    def ratelimit_fail_closed_kinds(self) -> frozenset[str]:
        """The kinds of ``ratelimit_fail_closed``, as a set."""
        return frozenset(p.strip() for p in self.ratelimit_fail_closed.split(",") if p.strip())
