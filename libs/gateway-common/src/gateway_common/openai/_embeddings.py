"""``POST /v1/embeddings`` request body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ._bounds import Dimensions

__all__ = ["EmbeddingRequest"]


class EmbeddingRequest(BaseModel):
    """An embeddings request: one input or a batch (strings or token arrays).

    Unknown fields are kept (``extra="allow"``) and passed through;
    ``dimensions``, when given, is a strict integer >= 1 (OpenAI's minimum).
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="Public model name, alias or provider/model.")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, a batch of texts, a token array, or a batch of token arrays."
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Dimensions | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        # One clear error for a wrong top-level type, instead of one per union branch.
        if isinstance(value, str) or (isinstance(value, list) and value):
            return value
        raise PydanticCustomError(
            "input_type", "expected a string or a non-empty array of strings or token arrays"
        )
