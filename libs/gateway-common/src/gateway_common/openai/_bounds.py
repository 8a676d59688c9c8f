"""The ranges OpenAI sets on request parameters, as reusable field types.

Each alias is a strict JSON type (``"0.5"`` is not a number, ``true`` is not
an integer; an integer is a valid decimal) with pydantic ``ge``/``le``
constraints, so a body is range-checked by the one parse the edge already
does, in pydantic-core. A bound's type says how it is reported: a float
bound is a "decimal" (``decimal_above_max_value``), an int bound an
"integer" (``integer_below_min_value``) — ``edge.api.errors.validation_error``
reads it from the error's context, so keep float bounds on float fields.

    alias            range         used by
    Temperature      0 .. 2        chat, responses, endpoint params
    TopP             0 .. 1        chat, responses, endpoint params
    Penalty          -2 .. 2       chat presence/frequency_penalty, endpoint params
    TokenLimit       >= 1          chat max_tokens/max_completion_tokens, endpoint params
    MaxOutputTokens  >= 16         responses max_output_tokens (OpenAI's minimum)
    ChoiceCount      1 .. 128      chat n
    TopLogprobs      0 .. 20       chat, responses
    LogitBias        {token id: -100 .. 100}   chat logit_bias (keys: non-negative integers as strings)
    Dimensions       >= 1          embeddings dimensions
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "ChoiceCount",
    "Dimensions",
    "LogitBias",
    "MaxOutputTokens",
    "Penalty",
    "Temperature",
    "TokenLimit",
    "TopLogprobs",
    "TopP",
]

Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0)]
TopP = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(strict=True, ge=-2.0, le=2.0)]
TokenLimit = Annotated[int, Field(strict=True, ge=1)]
MaxOutputTokens = Annotated[int, Field(strict=True, ge=16)]
ChoiceCount = Annotated[int, Field(strict=True, ge=1, le=128)]
TopLogprobs = Annotated[int, Field(strict=True, ge=0, le=20)]
Dimensions = Annotated[int, Field(strict=True, ge=1)]


def _token_id(key: str) -> str:
    # OpenAI's own wording; the edge prefixes "Invalid key in '<param>': <key>."
    if key.isascii() and key.isdigit():
        return key
    raise PydanticCustomError("invalid_key", "You should only be submitting non-negative integers")


LogitBias = dict[
    Annotated[str, AfterValidator(_token_id)],
    Annotated[float, Field(strict=True, ge=-100.0, le=100.0)],
]
