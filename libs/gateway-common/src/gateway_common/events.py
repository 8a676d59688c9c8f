"""Versioned event payloads published on JetStream.

An event is immutable once published. A breaking change gets a new model and
a new subject version (``usage.recorded.v2``); consumers keep reading v1
until it drains. Every event has an ``event_id`` that is unique per fact and
is used both as the ``Nats-Msg-Id`` header and as the consumer's idempotency
key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from .sessions_history import AppendTurns

__all__ = ["Event", "SkuQuantity", "TokenUsage", "TurnsAppended", "UsageRecorded"]


def _now() -> datetime:
    return datetime.now(UTC)


def _event_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """Common envelope: id, time, schema version. Frozen; unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=_event_id, description="Unique per fact; Nats-Msg-Id.")
    occurred_at: datetime = Field(default_factory=_now, description="When the fact happened (UTC).")

    def to_bytes(self) -> bytes:
        """Serialize for publishing."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        """Parse a published payload; raises ``pydantic.ValidationError`` on a poison message."""
        return cls.model_validate(orjson.loads(data))


class TokenUsage(BaseModel):
    """Token counts in the OpenAI sense (prompt includes cached, completion includes reasoning)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    #: Prompt tokens written to the provider's prompt cache (part of ``prompt_tokens``).
    cache_write_tokens: int = Field(default=0, ge=0)


class SkuQuantity(BaseModel):
    """Units of an extra catalog SKU (``catalog.skus``) that a call consumed, e.g. routing tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(description="A key of the catalog's ``skus``.")
    quantity: int = Field(ge=0)


class UsageRecorded(Event):
    """A provider call finished (or was cut short) and consumed tokens. Published by the router."""

    schema_version: Literal[1] = 1
    request_id: str = Field(description="The gateway request id (X-Request-Id).")
    project_id: str = Field(description="Tenant that pays.")
    api_key_id: str = Field(default="", description="Key that made the call, if any.")
    operation: Literal["chat.completions", "embeddings", "responses"]
    model: str = Field(description="Public catalog model name that was served.")
    provider: str = Field(description="Provider that served the call.")
    deployment: str = Field(description="Deployment (provider entry) that served the call.")
    usage: TokenUsage
    byok: bool = Field(default=False, description="Served with the caller's own provider key.")
    status: Literal["ok", "error", "cancelled"] = "ok"
    budget_lease_id: str = Field(
        default="",
        description="The billing budget lease the edge admitted the request under, if any.",
    )
    endpoint: str = Field(default="", description="Project endpoint slug that was called, if any.")
    endpoint_id: str = Field(
        default="",
        description="That endpoint's id (its monthly spend is counted by id, for its budget).",
    )
    sku_usage: tuple[SkuQuantity, ...] = Field(
        default=(), description="Extra SKUs consumed besides the model's tokens (priced first)."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="The client's request ``metadata`` (string values), kept with the event.",
    )
    own_endpoint: bool = Field(
        default=False,
        description=(
            "Served by the project's own endpoint (a gateway's credential, seed 002's BYOK): "
            "``model`` is that endpoint's name, not a catalog model; only ``sku_usage`` is priced."
        ),
    )


class TurnsAppended(Event):
    """A call's turns to keep in a session's history (``session.turn.appended.v1``, stream
    TRANSCRIPTS). Published by the edge beside its ``sessions.history.append.v1`` request,
    so turns JetStream acknowledged are kept even when sessions did not answer in time;
    sessions applies it idempotently by ``append.request_id`` (the copy that lands second
    stores nothing). ``event_id`` is ``event_id_of(append)``: a re-publish of the
    same append is dropped by the stream's duplicate window."""

    schema_version: Literal[1] = 1
    append: AppendTurns = Field(description="The append, as the request/reply carries it.")

    @staticmethod
    def event_id_of(append: AppendTurns) -> str:
        """The event id of ``append``: one per (session, request id)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{append.session_id}\0{append.request_id}").hex
