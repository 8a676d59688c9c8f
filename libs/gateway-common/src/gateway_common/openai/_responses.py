"""Shapes the gateway produces itself: the model list and the error object."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ErrorObject", "ErrorResponse", "Model", "ModelList", "ModelPricing"]


class ModelPricing(BaseModel):
    """Prices per token as exact decimal strings (never floats)."""

    input: str = Field(description="Per prompt token.")
    output: str = Field(description="Per completion token.")
    cached_input: str | None = Field(default=None, description="Per cached prompt token.")


class Model(BaseModel):
    """One entry of ``GET /v1/models``: OpenAI's fields plus the gateway's catalog facts."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    provider: str = Field(description="Provider of the model's first deployment.")
    context_window: int = Field(description="Max prompt + completion tokens; 0 if unknown.")
    max_output_tokens: int = Field(description="Max completion tokens; 0 if unknown.")
    pricing: ModelPricing
    capabilities: list[str] = Field(description="chat, responses, embeddings, tools, ...")
    aliases: list[str] = Field(description="Other names that resolve to this model.")


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[Model]


class ErrorObject(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error body on ``/v1``: ``{"error": {...}}``."""

    error: ErrorObject
