"""Edge tables: ``projects``, ``api_keys``, ``provider_credentials``, ``endpoints``
(Base / Create / table / Public).

An API key is never stored: only ``key_hash``, the HMAC-SHA256 of the full
key under ``GATEWAY_SECRET_KEY`` (hex), and ``prefix``, its first 12
characters for display. A provider credential is stored only sealed with
AES-256-GCM (``edge.credentials``): ``ciphertext`` (nonce + ciphertext + tag)
and the ``key_id`` of the key that sealed it, next to a ``fingerprint`` and
the last four characters for display. ``Public`` models are what an API may
show; they leave hashes and ciphertexts out.

An endpoint is a project's named preset of the Gateway API (seed 001,
``POST /api/{project}/{slug}``): a catalog model, an optional system prompt
and generation parameters, plus seed 001's pipeline settings (prompt template,
schemas, guardrails, caps, budget, rate limits, fallbacks, sessions).
``EndpointCreate`` / ``EndpointUpdate`` check what can be checked field by field
without the catalog (slug shape, parameter names, types and OpenAI's ranges, the
template's placeholders, limits >= 1, a budget >= 0, the rate-limit shape, the
session TTL); the admin route checks the rest on the endpoint as it would be saved
(the model and fallbacks against the catalog, schemas and guardrails compiled as the
cache compiles them, ``edge.endpointsync.view_of``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, DateTime, LargeBinary, Numeric, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from gateway_common.billing_api import Money
from gateway_common.openai import Penalty, ResponseFormat, Temperature, TokenLimit, TopP
from gateway_common.sessions_history import MAX_TTL_SECONDS

from ..pipeline.ratelimit import RateLimits

__all__ = [
    "ENDPOINT_PARAMS",
    "MAX_ALLOWED_MODELS",
    "MAX_FALLBACKS",
    "MAX_REQUEST_TOKENS",
    "MAX_SCHEMA_DEPTH",
    "PLACEHOLDER_PATTERN",
    "PREFIX_LEN",
    "SLUG_PATTERN",
    "ApiKey",
    "ApiKeyBase",
    "ApiKeyCreate",
    "ApiKeyPublic",
    "ChannelKey",
    "Endpoint",
    "EndpointBase",
    "EndpointCreate",
    "EndpointPublic",
    "EndpointUpdate",
    "Project",
    "ProjectBase",
    "ProjectPublic",
    "ProjectType",
    "ProviderCredential",
    "ProviderCredentialPublic",
    "checked_allowed_models",
    "checked_rate_limits",
    "template_variables",
]

#: How many leading characters of a key are kept for display.
PREFIX_LEN = 12


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


#: The most models one key's ``allowed_models`` may list, and the longest name.
MAX_ALLOWED_MODELS = 256
MAX_MODEL_NAME = 200


def checked_rate_limits(value: Any) -> dict[str, Any] | None:
    """``rate_limits`` as stored: checked against ``RateLimits`` (extra fields, non-integers,
    amounts below 1 refused, naming the field), nulls dropped; None or ``{}`` is no limit."""
    if value is None:
        return None
    limits = RateLimits.model_validate(value)
    dumped = limits.model_dump(exclude_none=True)
    return dumped or None


def checked_allowed_models(value: Any) -> list[str] | None:
    """``allowed_models`` as stored: None (every model) or 1..``MAX_ALLOWED_MODELS``
    distinct non-empty names, in their first order."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise PydanticCustomError("allowed_models", "must be a list of model names, or null")
    names = list(dict.fromkeys(m.strip() for m in value))
    if not names:
        raise PydanticCustomError(
            "allowed_models", "must list at least one model (null allows every model)"
        )
    if len(names) > MAX_ALLOWED_MODELS:
        raise PydanticCustomError(
            "allowed_models", "at most {limit} models", {"limit": MAX_ALLOWED_MODELS}
        )
    if any(not m or len(m) > MAX_MODEL_NAME for m in names):
        raise PydanticCustomError(
            "allowed_models",
            "each model name must be 1 to {limit} characters",
            {"limit": MAX_MODEL_NAME},
        )
    return names


#: ``ai_gateway``: model-level OpenAI-compatible access (seed 000, 001);
#: ``channel``: a site/agent channel with its own key (seed 003).
ProjectType = Literal["ai_gateway", "channel"]


class ProjectBase(SQLModel):
    """A tenant: owns keys and credentials and pays for usage."""

    name: str = Field(max_length=200, description="Unique human name.")
    type: str = Field(
        default="ai_gateway", max_length=50, description="Project kind: ai_gateway or channel."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSON, description="Per-project options (free-form)."
    )
    rate_limits: dict[str, Any] | None = Field(
        default=None,
        sa_type=JSON,
        description="Requests per minute / per day and tokens per minute for the whole "
        "project (edge.pipeline.ratelimit.RateLimits); null: none.",
    )

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> dict[str, Any] | None:
        return checked_rate_limits(value)


class Project(ProjectBase, table=True):
    """Row of ``projects``."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("name", name="uq_projects_name"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class _UtcTimes(SQLModel):
    """Public models: SQLite hands timestamps back naive, and every one we store is UTC."""

    @model_validator(mode="after")
    def _aware(self) -> _UtcTimes:
        for name, value in self:
            if isinstance(value, datetime) and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))
        return self


class ProjectPublic(_UtcTimes, ProjectBase):
    """A project as APIs show it."""

    id: str
    created_at: datetime


class ApiKeyBase(SQLModel):
    """What an operator chooses about a key."""

    name: str = Field(max_length=200, description="Label shown in listings.")
    description: str | None = Field(default=None, max_length=1000)
    scopes: list[str] = Field(
        default_factory=list, sa_type=JSON, description="Any of chat, embeddings, responses, admin."
    )
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    rate_limits: dict[str, Any] | None = Field(
        default=None,
        sa_type=JSON,
        description="Requests per minute / per day and tokens per minute of this key "
        "(edge.pipeline.ratelimit.RateLimits); null: none.",
    )
    allowed_models: list[str] | None = Field(
        default=None,
        sa_type=JSON,
        description="Catalog models (or aliases) this key may call; null: every model.",
    )

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> dict[str, Any] | None:
        return checked_rate_limits(value)

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _allowed_models(cls, value: Any) -> list[str] | None:
        return checked_allowed_models(value)


class ApiKeyCreate(ApiKeyBase):
    """Input to ``repo.create_api_key``."""


class ApiKey(ApiKeyBase, table=True):
    """Row of ``api_keys``."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", index=True, max_length=36
    )
    key_hash: str = Field(max_length=64, description="HMAC-SHA256(key), hex; unique.")
    prefix: str = Field(max_length=PREFIX_LEN, description="First characters of the key.")
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ApiKeyPublic(_UtcTimes, ApiKeyBase):
    """A key as APIs show it: never the hash."""

    id: str
    project_id: str
    prefix: str
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None


class ProviderCredential(SQLModel, table=True):
    """Row of ``provider_credentials``: one managed provider key per project and provider."""

    __tablename__ = "provider_credentials"
    __table_args__ = (
        UniqueConstraint("project_id", "provider", name="uq_provider_credentials_project_provider"),
    )

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", index=True, max_length=36
    )
    provider: str = Field(max_length=100, description="Catalog provider name the key is for.")
    base_url: str | None = Field(
        default=None, max_length=2000, description="Custom upstream URL (SSRF-checked on save)."
    )
    key_id: str = Field(max_length=16, description="Id of the key that sealed ``ciphertext``.")
    ciphertext: bytes = Field(sa_type=LargeBinary, description="AES-256-GCM nonce+ct+tag.")
    fingerprint: str = Field(max_length=80, description="sha256:<first 16 hex> of the key.")
    last4: str = Field(max_length=4, description="Last four characters of the key.")
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class ProviderCredentialPublic(_UtcTimes):
    """A credential as APIs show it: never the key, never the ciphertext."""

    id: str
    project_id: str
    provider: str
    base_url: str | None
    key_id: str
    fingerprint: str
    last4: str
    created_at: datetime
    updated_at: datetime


#: An endpoint slug: lower-case letters, digits and '-', starting with a letter or digit.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_SLUG = re.compile(SLUG_PATTERN)


class _Params(BaseModel):
    """The generation parameters an endpoint may fix, typed and bounded as OpenAI does."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = Field(default=None, min_length=1, max_length=50)


#: The keys ``params`` may hold: generation parameters only (no model, messages, tools, n ...).
ENDPOINT_PARAMS: tuple[str, ...] = tuple(_Params.model_fields)

#: A ``prompt_template`` placeholder: ``{{name}}`` (spaces inside the braces allowed), the
#: name an identifier. Every ``{{`` must open one; a lone ``}}`` is plain text.
PLACEHOLDER_PATTERN = r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}"
_PLACEHOLDER = re.compile(PLACEHOLDER_PATTERN)
#: The largest ``max_request_tokens`` (the column is a 32-bit integer).
MAX_REQUEST_TOKENS = 2**31 - 1
#: The deepest nesting (objects and arrays) an ``input_schema`` / ``output_schema`` may have:
#: checking a schema recurses once per level, and far deeper ones are no real schema.
MAX_SCHEMA_DEPTH = 64
#: At most this many ``fallbacks`` per endpoint.
MAX_FALLBACKS = 8


def _check_slug(value: str | None) -> str | None:
    if value is not None and not _SLUG.fullmatch(value):
        raise PydanticCustomError(
            "slug_shape", "must be 1-64 lower-case letters, digits or '-', not starting with '-'"
        )
    return value


def _check_params(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` with its null entries dropped; an unknown key names the key.

    A wrong type or an out-of-range value raises ``_Params``' own errors, which
    pydantic nests under ``params`` (``params.temperature``, ...).
    """
    if value is None:
        return None
    for key in value:
        if key not in _Params.model_fields:
            raise PydanticCustomError(
                "unknown_param",
                "'{key}' is not an endpoint parameter; allowed: {allowed}",
                {"key": key, "allowed": ", ".join(ENDPOINT_PARAMS)},
            )
    return _Params.model_validate(value).model_dump(mode="json", exclude_none=True)


def template_variables(template: str) -> tuple[str, ...]:
    """The variable names ``template`` uses, in first-use order, each once.

    Raises ``ValueError`` (with the offending character offset) when a ``{{`` opens no
    well-formed placeholder: unclosed, empty, or a name that is not an identifier.
    """
    names: list[str] = []
    at = 0
    while (start := template.find("{{", at)) != -1:
        match = _PLACEHOLDER.match(template, start)
        if match is None:
            close = template.find("}}", start + 2)
            if close == -1:
                raise ValueError(f"'{{{{' at character {start} is never closed with '}}}}'")
            inner = template[start + 2 : close].strip()
            raise ValueError(
                f"'{{{{{inner}}}}}' at character {start} is not a placeholder: use "
                "{{name}}, the name letters, digits and '_', not starting with a digit"
            )
        if match.group(1) not in names:
            names.append(match.group(1))
        at = match.end()
    return tuple(names)


def _check_template(value: str | None) -> str | None:
    if value is not None:
        try:
            template_variables(value)
        except ValueError as exc:
            raise PydanticCustomError("template_syntax", "{why}", {"why": str(exc)}) from None
    return value


def _check_schema_depth(value: object) -> object:
    """``value`` unless it nests more than ``MAX_SCHEMA_DEPTH`` levels (an iterative walk, so
    a deep one is a 400 here rather than a ``RecursionError`` in the meta-schema check)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        children = node.values() if isinstance(node, dict) else node
        if depth > MAX_SCHEMA_DEPTH:
            raise PydanticCustomError(
                "schema_depth",
                "the schema is nested more than {n} levels deep",
                {"n": MAX_SCHEMA_DEPTH},
            )
        stack.extend((child, depth + 1) for child in children)
    return value


def _check_rate_limits(value: object) -> dict[str, int] | None:
    """``value`` as ``RateLimits`` stores it (nulls dropped); errors nest under the field."""
    if value is None:
        return None
    return RateLimits.model_validate(value).model_dump(exclude_none=True)


def _to_decimal(value: object) -> object:
    """A JSON number or a decimal string as an exact ``Decimal`` (before the bounds check).

    A JSON number arrives as a float; its shortest repr is what the client wrote (``25.5``,
    never ``25.499999...``). A boolean, a list or an object is a type error; the bounds
    (>= 0, at most 6 decimal places, finite) are the field's own.
    """
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError(
                "decimal_text", 'not a decimal number (write it as 25 or "25.00")'
            ) from None
    raise PydanticCustomError("decimal_type", "expected a decimal number or a decimal string")


def _check_fallbacks(value: list[str] | None) -> list[str] | None:
    """At most ``MAX_FALLBACKS`` non-empty names, none repeated (the catalog is the route's)."""
    if value is None:
        return None
    if len(value) > MAX_FALLBACKS:
        raise PydanticCustomError(
            "too_long", "at most {n} fallbacks are allowed", {"n": MAX_FALLBACKS}
        )
    seen: set[str] = set()
    for i, name in enumerate(value):
        if not name or len(name) > 200:
            raise PydanticCustomError(
                "fallback_name",
                "fallbacks[{i}] must be a model name of 1-200 characters",
                {"i": i},
            )
        if name in seen:
            raise PydanticCustomError(
                "duplicate_fallback", "fallbacks[{i}] repeats '{name}'", {"i": i, "name": name}
            )
        seen.add(name)
    return value


def _max_request_tokens() -> Any:
    return Field(
        default=None,
        ge=1,
        le=MAX_REQUEST_TOKENS,
        description="Per-request cap: estimated prompt tokens plus max output; null: none.",
    )


def _monthly_budget() -> Any:
    return Field(
        default=None,
        ge=0,
        max_digits=20,
        decimal_places=6,
        description="Monthly spend limit in the price book's currency (a JSON number or a "
        'decimal string, e.g. "25.00"); null: none.',
    )


def _session_ttl(default: int | None) -> Any:
    return Field(
        default=default,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="Seconds a session lives after its last turn (1 s to 30 days).",
    )


class EndpointBase(SQLModel):
    """What an operator chooses about an endpoint."""

    slug: str = Field(max_length=64, description="Name in the URL, unique per project.")
    description: str | None = Field(default=None, max_length=1000)
    model: str = Field(max_length=200, description="Catalog model name or alias it calls.")
    system_prompt: str | None = Field(
        default=None, sa_type=Text, description="Sent as the first (system) message, if set."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="Generation parameters sent with every call (see ENDPOINT_PARAMS).",
    )
    streaming_enabled: bool = Field(
        default=False, description='Whether a call\'s "stream": true is honoured.'
    )
    active: bool = Field(default=True, description="An inactive endpoint answers 404.")
    prompt_template: str | None = Field(
        default=None,
        sa_type=Text,
        description="User message built from the call's ``variables``: ``{{name}}`` "
        "placeholders (a missing variable is a 422 naming it).",
    )
    input_schema: dict[str, Any] | bool | None = Field(
        default=None, sa_type=JSON, description="JSON Schema the call's ``variables`` must satisfy."
    )
    output_schema: dict[str, Any] | bool | None = Field(
        default=None,
        sa_type=JSON,
        description="JSON Schema the model's content, parsed as JSON, must satisfy (else 502).",
    )
    guardrails: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_type=JSON,
        description="Input/output checks: max_length, blocked_terms, regex, pii "
        "(edge.pipeline.guardrails).",
    )
    max_request_tokens: int | None = Field(
        default=None, description="Per-request cap: estimated prompt tokens plus max output."
    )
    monthly_budget: Decimal | None = Field(
        default=None,
        sa_type=Numeric(20, 6),
        description="Monthly spend limit in the price book's currency (billing enforces it).",
    )
    rate_limits: dict[str, Any] | None = Field(
        default=None,
        sa_type=JSON,
        description='Requests admitted per minute / per day: {"per_minute": N, "per_day": N}.',
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        sa_type=JSON,
        description="Other catalog models tried in order when the model fails after the "
        "router's own failover.",
    )
    sessions_enabled: bool = Field(
        default=False,
        description="Whether calls keep conversation history by ``session_id`` (sessions).",
    )
    session_ttl_seconds: int = Field(
        default=86400, description="A session expires after this long without a turn."
    )


class EndpointCreate(EndpointBase):
    """``POST /admin/projects/{id}/endpoints`` (and the input of ``endpoints_repo``)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # type: ignore[assignment]

    model: str = Field(min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    prompt_template: str | None = Field(default=None, max_length=100_000)
    max_request_tokens: int | None = _max_request_tokens()
    monthly_budget: Decimal | None = _monthly_budget()
    session_ttl_seconds: int = _session_ttl(86400)

    _slug = field_validator("slug")(_check_slug)
    _params = field_validator("params")(_check_params)
    _template = field_validator("prompt_template")(_check_template)
    _schemas = field_validator("input_schema", "output_schema", mode="before")(_check_schema_depth)
    _rate_limits = field_validator("rate_limits", mode="before")(_check_rate_limits)
    _budget = field_validator("monthly_budget", mode="before")(_to_decimal)
    _fallbacks = field_validator("fallbacks")(_check_fallbacks)


#: ``EndpointUpdate`` fields that may not be null (the others: null clears them).
_NOT_NULL = (
    "slug",
    "model",
    "params",
    "streaming_enabled",
    "active",
    "guardrails",
    "fallbacks",
    "sessions_enabled",
    "session_ttl_seconds",
)


class EndpointUpdate(SQLModel):
    """``PATCH /admin/projects/{id}/endpoints/{slug}``: fields left out keep their value;
    ``params``, ``guardrails``, ``rate_limits`` and ``fallbacks`` are replaced whole; null
    clears ``description``, ``system_prompt``, ``prompt_template``, ``input_schema``,
    ``output_schema``, ``max_request_tokens``, ``monthly_budget`` and ``rate_limits``
    (``[]`` clears the lists)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # type: ignore[assignment]

    slug: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=1000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    params: dict[str, Any] | None = None
    streaming_enabled: bool | None = None
    active: bool | None = None
    prompt_template: str | None = Field(default=None, max_length=100_000)
    input_schema: dict[str, Any] | bool | None = None
    output_schema: dict[str, Any] | bool | None = None
    guardrails: list[dict[str, Any]] | None = None
    max_request_tokens: int | None = _max_request_tokens()
    monthly_budget: Decimal | None = _monthly_budget()
    rate_limits: dict[str, Any] | None = None
    fallbacks: list[str] | None = None
    sessions_enabled: bool | None = None
    session_ttl_seconds: int | None = _session_ttl(None)

    _slug = field_validator("slug")(_check_slug)
    _params = field_validator("params")(_check_params)
    _template = field_validator("prompt_template")(_check_template)
    _schemas = field_validator("input_schema", "output_schema", mode="before")(_check_schema_depth)
    _rate_limits = field_validator("rate_limits", mode="before")(_check_rate_limits)
    _budget = field_validator("monthly_budget", mode="before")(_to_decimal)
    _fallbacks = field_validator("fallbacks")(_check_fallbacks)

    @model_validator(mode="after")
    def _not_null(self) -> EndpointUpdate:
        for name in _NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise PydanticCustomError("not_null", "'{name}' cannot be null", {"name": name})
        return self


class Endpoint(EndpointBase, table=True):
    """Row of ``endpoints``."""

    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("project_id", "slug", name="uq_endpoints_project_slug"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", index=True, max_length=36
    )
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class EndpointPublic(_UtcTimes, EndpointBase):
    """An endpoint as APIs show it (``monthly_budget`` as a plain decimal string)."""

    monthly_budget: Money | None = None
    id: str
    project_id: str
    created_at: datetime
    updated_at: datetime


class ChannelKey(SQLModel, table=True):
    """Row of ``channel_keys``: a channel project's one key (see ``edge.channels``).

    Looked up by ``key_hash`` (HMAC-SHA256 under ``GATEWAY_SECRET_KEY``); the key
    itself is kept sealed (AES-256-GCM, ``CredentialCipher``) so its owner can read it
    again. Rotating replaces the row's hash and ciphertext: the old key stops at once.
    """

    __tablename__ = "channel_keys"
    __table_args__ = (UniqueConstraint("key_hash", name="uq_channel_keys_key_hash"),)

    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", primary_key=True, max_length=36
    )
    key_hash: str = Field(max_length=64, description="HMAC-SHA256 hex of the key; unique.")
    prefix: str = Field(max_length=16, description="First characters, for display.")
    key_id: str = Field(max_length=16, description="Id of the key that sealed ``ciphertext``.")
    ciphertext: bytes = Field(sa_type=LargeBinary, description="AES-256-GCM nonce+ct+tag.")
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
