"""OpenAI's parameter ranges on the request models (``gateway_common.openai._bounds``).

Pins what ``edge.api.errors.validation_error`` relies on: each bound fails as
pydantic's ``greater_than_equal`` / ``less_than_equal`` at the field's own
location, with a float bound for a decimal field and an int bound for an
integer field; types are strict; a bad ``logit_bias`` key fails at ``[key]``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from gateway_common.openai import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m", "input": "hi"}
EMBEDDINGS = {"model": "e", "input": "hi"}

#: (model, base body, field, lowest allowed, highest allowed or None, bound type)
BOUNDS: list[tuple[type[BaseModel], dict[str, Any], str, int, int | None, type]] = [
    (ChatCompletionRequest, CHAT, "max_tokens", 1, None, int),
    (ChatCompletionRequest, CHAT, "max_completion_tokens", 1, None, int),
    (ChatCompletionRequest, CHAT, "n", 1, 128, int),
    (ChatCompletionRequest, CHAT, "temperature", 0, 2, float),
    (ChatCompletionRequest, CHAT, "top_p", 0, 1, float),
    (ChatCompletionRequest, CHAT, "presence_penalty", -2, 2, float),
    (ChatCompletionRequest, CHAT, "frequency_penalty", -2, 2, float),
    (ChatCompletionRequest, CHAT, "top_logprobs", 0, 20, int),
    (ResponsesRequest, RESPONSES, "temperature", 0, 2, float),
    (ResponsesRequest, RESPONSES, "top_p", 0, 1, float),
    (ResponsesRequest, RESPONSES, "max_output_tokens", 16, None, int),
    (ResponsesRequest, RESPONSES, "top_logprobs", 0, 20, int),
    (EmbeddingRequest, EMBEDDINGS, "dimensions", 1, None, int),
]
IDS = [f"{model.__name__}.{field}" for model, _, field, *_ in BOUNDS]


def _errors(model: type[BaseModel], body: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(orjson.dumps(body))
    return info.value.errors(include_url=False)


@pytest.mark.parametrize(("model", "base", "field", "low", "high", "bound_type"), BOUNDS, ids=IDS)
def test_each_bound_refuses_just_outside_and_accepts_its_edges(
    model: type[BaseModel],
    base: dict[str, Any],
    field: str,
    low: int,
    high: int | None,
    bound_type: type,
) -> None:
    step = 1 if bound_type is int else 0.01
    [below] = _errors(model, {**base, field: low - step})
    assert (below["type"], below["loc"]) == ("greater_than_equal", (field,))
    assert type(below["ctx"]["ge"]) is bound_type and below["ctx"]["ge"] == low
    edges = [low] if high is None else [low, high]
    if high is not None:
        [above] = _errors(model, {**base, field: high + step})
        assert (above["type"], above["loc"]) == ("less_than_equal", (field,))
        assert type(above["ctx"]["le"]) is bound_type and above["ctx"]["le"] == high
    for value in edges:
        parsed = model.model_validate_json(orjson.dumps({**base, field: value}))
        assert getattr(parsed, field) == value
    assert getattr(model.model_validate_json(orjson.dumps({**base, field: None})), field) is None


@pytest.mark.parametrize(("model", "base", "field", "low", "high", "bound_type"), BOUNDS, ids=IDS)
def test_bounded_fields_are_strict(
    model: type[BaseModel],
    base: dict[str, Any],
    field: str,
    low: int,
    high: int | None,
    bound_type: type,
) -> None:
    for wrong in (str(low), True, [low]):
        [error] = _errors(model, {**base, field: wrong})
        assert error["loc"] == (field,) and error["type"].endswith("_type"), error
    if bound_type is int:
        [error] = _errors(model, {**base, field: low + 0.5})
        assert error["type"] == "int_type"
    else:  # an integer is a valid decimal
        parsed = model.model_validate_json(orjson.dumps({**base, field: low}))
        assert getattr(parsed, field) == low


def test_logit_bias_values_keys_and_edges() -> None:
    [low] = _errors(ChatCompletionRequest, {**CHAT, "logit_bias": {"50256": -100.5}})
    assert (low["type"], low["loc"], low["ctx"]) == (
        "greater_than_equal",
        ("logit_bias", "50256"),
        {"ge": -100.0},
    )
    [high] = _errors(ChatCompletionRequest, {**CHAT, "logit_bias": {"1": 101}})
    assert (high["type"], high["ctx"]) == ("less_than_equal", {"le": 100.0})
    for key in ("hello", "-1", "1.5", "", "١٢"):  # the last: Arabic-Indic digits
        [error] = _errors(ChatCompletionRequest, {**CHAT, "logit_bias": {key: 1}})
        assert (error["type"], error["loc"]) == ("invalid_key", ("logit_bias", key, "[key]"))
    parsed = ChatCompletionRequest.model_validate_json(
        orjson.dumps({**CHAT, "logit_bias": {"0": -100, "50256": 100, "7": 0.5}})
    )
    assert parsed.logit_bias == {"0": -100, "50256": 100, "7": 0.5}


def test_unknown_fields_still_pass_through() -> None:
    chat = ChatCompletionRequest.model_validate_json(
        orjson.dumps({**CHAT, "temperature": 1, "service_tier": "flex", "x_new": {"n": 999}})
    )
    assert chat.model_extra == {"service_tier": "flex", "x_new": {"n": 999}}
    responses = ResponsesRequest.model_validate_json(
        orjson.dumps({**RESPONSES, "max_output_tokens": 64, "reasoning": {"effort": "low"}})
    )
    assert responses.max_output_tokens == 64
    assert responses.model_extra == {"reasoning": {"effort": "low"}}
