"""``gateways``: seed 002's configured models (Base / Create / Update / table / Public) and
their repository functions.

A gateway is a project's ready-to-use model: instructions (the system prompt),
a model (a catalog model, or with ``credential_id`` the model name on the
project credential's own OpenAI-compatible ``base_url``), fixed generation
``params`` (``temperature``, ``top_p``, ``max_tokens``, ``stop``, and ``prefill``:
an assistant message placed last so the model continues it), an optional
knowledge collection with its retrieval settings (``top_k``, ``min_score``),
the parameter names a request may ``overridable`` (the others are fixed and a
request's value is ignored), an optional ``routing`` policy and what happens
when retrieval fails (``on_rag_failure``).

The body models check every field on its own (a 400 naming it); the admin
route checks what needs the catalog or another row (the model, the credential).
The repository follows ``repo``'s conventions: keyword-only, explicit session,
commit on write.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, DateTime, Text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.openai import Temperature, TokenLimit, TopP

from .models import SLUG_PATTERN

__all__ = [
    "OVERRIDABLE",
    "Gateway",
    "GatewayCreate",
    "GatewayParams",
    "GatewayPublic",
    "GatewayUpdate",
    "Routing",
    "create_gateway",
    "delete_gateway",
    "get_gateway",
    "list_gateways",
    "update_gateway",
]

#: The parameters a request may be allowed to override (``overridable``).
OVERRIDABLE: tuple[str, ...] = ("temperature", "top_p", "max_tokens", "stop")
#: The most chunks one retrieval may ask for.
MAX_TOP_K = 50


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class GatewayParams(BaseModel):
    """A gateway's fixed generation parameters, typed and bounded as OpenAI does."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: TokenLimit | None = None
    stop: str | list[str] | None = None
    prefill: str | None = Field(default=None, min_length=1, max_length=100_000)


class Routing(BaseModel):
    """``{"policy": "auto", "cheap": model, "strong": model}``: pick a model per request by
    the rule in ``edge.gateways.choose_model``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    policy: Literal["auto"]
    cheap: str = Field(min_length=1, max_length=200)
    strong: str = Field(min_length=1, max_length=200)


_NAME = re.compile(SLUG_PATTERN)


def _check_name(value: str | None) -> str | None:
    if value is not None and not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name_shape", "must be 1-64 lower-case letters, digits or '-', not starting with '-'"
        )
    return value


def _check_params(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    return GatewayParams.model_validate(value).model_dump(mode="json", exclude_none=True)


def _check_overridable(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PydanticCustomError("overridable", "must be a list of parameter names")
    for name in value:
        if name not in OVERRIDABLE:
            raise PydanticCustomError(
                "overridable",
                "'{name}' cannot be overridden; allowed: {allowed}",
                {"name": name, "allowed": ", ".join(OVERRIDABLE)},
            )
    return list(dict.fromkeys(value))


def _check_routing(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    return Routing.model_validate(value).model_dump(mode="json")


class GatewayBase(SQLModel):
    """What an operator chooses about a gateway."""

    name: str = Field(max_length=64, description="Display name; ``<name>:<first 4 hex of id>``.")
    instructions: str | None = Field(
        default=None, sa_type=Text, description="System prompt, sent first."
    )
    model: str = Field(max_length=200, description="Catalog model, or the endpoint's model name.")
    credential_id: str | None = Field(
        default=None,
        max_length=36,
        description="A project credential whose base_url serves ``model`` (BYOK); null: catalog.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="temperature, top_p, max_tokens, stop, prefill.",
    )
    collection_id: str | None = Field(
        default=None, max_length=64, description="Knowledge collection grounding the answers."
    )
    top_k: int = Field(default=5, description="Chunks retrieved per request.")
    min_score: float = Field(default=0.0, description="Chunks scoring below are left out.")
    overridable: list[str] = Field(
        default_factory=list, sa_type=JSON, description="Params a request may override."
    )
    routing: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description='null or {"policy": "auto", "cheap", "strong"}.'
    )
    on_rag_failure: str = Field(
        default="fail", max_length=16, description='"fail" (503) or "ungrounded".'
    )


class GatewayCreate(GatewayBase):
    """``POST /admin/projects/{id}/gateways``."""

    model_config = ConfigDict(extra="forbid", strict=True)  # type: ignore[assignment]

    name: str = Field(min_length=1, max_length=64)
    instructions: str | None = Field(default=None, max_length=100_000)
    model: str = Field(min_length=1, max_length=200)
    collection_id: str | None = Field(default=None, min_length=1, max_length=64)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    on_rag_failure: Literal["fail", "ungrounded"] = "fail"

    _name = field_validator("name")(_check_name)
    _params = field_validator("params", mode="before")(_check_params)
    _overridable = field_validator("overridable", mode="before")(_check_overridable)
    _routing = field_validator("routing", mode="before")(_check_routing)


#: ``GatewayUpdate`` fields that may not be null (the others: null clears them).
_NOT_NULL = ("name", "model", "params", "top_k", "min_score", "overridable", "on_rag_failure")


class GatewayUpdate(SQLModel):
    """``PATCH .../gateways/{gid}``: fields left out keep their value; ``params``,
    ``overridable`` and ``routing`` are replaced whole; null clears ``instructions``,
    ``credential_id``, ``collection_id`` and ``routing``."""

    model_config = ConfigDict(extra="forbid", strict=True)  # type: ignore[assignment]

    name: str | None = Field(default=None, min_length=1, max_length=64)
    instructions: str | None = Field(default=None, max_length=100_000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    credential_id: str | None = Field(default=None, max_length=36)
    params: dict[str, Any] | None = None
    collection_id: str | None = Field(default=None, min_length=1, max_length=64)
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    overridable: list[str] | None = None
    routing: dict[str, Any] | None = None
    on_rag_failure: Literal["fail", "ungrounded"] | None = None

    _name = field_validator("name")(_check_name)
    _params = field_validator("params", mode="before")(_check_params)
    _overridable = field_validator("overridable", mode="before")(_check_overridable)
    _routing = field_validator("routing", mode="before")(_check_routing)

    @model_validator(mode="after")
    def _not_null(self) -> GatewayUpdate:
        for name in _NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise PydanticCustomError("not_null", "'{name}' cannot be null", {"name": name})
        return self


class Gateway(GatewayBase, table=True):
    """Row of ``gateways``."""

    __tablename__ = "gateways"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    project_id: str = Field(
        foreign_key="projects.id", ondelete="CASCADE", index=True, max_length=36
    )
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class GatewayPublic(GatewayBase):
    """A gateway as APIs show it, with ``short_name`` (``<name>:<first 4 hex of id>``)."""

    id: str
    project_id: str
    short_name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Gateway) -> GatewayPublic:
        return cls.model_validate(row, update={"short_name": f"{row.name}:{row.id[:4]}"})


async def create_gateway(*, session: AsyncSession, project_id: str, data: GatewayCreate) -> Gateway:
    """A new gateway of ``project_id``."""
    row = Gateway.model_validate(data, update={"project_id": project_id})
    session.add(row)
    await session.commit()
    return row


async def list_gateways(
    *, session: AsyncSession, project_id: str | None = None
) -> Sequence[Gateway]:
    """Every gateway (of ``project_id`` when given), oldest first."""
    query = select(Gateway).order_by(col(Gateway.project_id), col(Gateway.created_at))
    if project_id is not None:
        query = query.where(Gateway.project_id == project_id)
    return (await session.exec(query)).all()


async def get_gateway(*, session: AsyncSession, project_id: str, gateway_id: str) -> Gateway | None:
    """The gateway ``gateway_id`` of ``project_id``, if any (another project's: None)."""
    query = select(Gateway).where(Gateway.project_id == project_id, Gateway.id == gateway_id)
    return (await session.exec(query)).first()


async def update_gateway(*, session: AsyncSession, row: Gateway, data: GatewayUpdate) -> Gateway:
    """Apply the fields ``data`` sets to ``row``."""
    row.sqlmodel_update(data.model_dump(exclude_unset=True))
    row.updated_at = _now()
    session.add(row)
    await session.commit()
    return row


async def delete_gateway(*, session: AsyncSession, row: Gateway) -> None:
    """Delete ``row``."""
    await session.delete(row)
    await session.commit()
