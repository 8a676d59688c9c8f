"""``router.generation``: seed 002's generation_context from the published usage event."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway_common.catalog import Catalog
from gateway_common.errors import ProviderUnavailable
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import PriceIndex
from router.generation import GenerationContext, context_json, with_context

CATALOG = Catalog.model_validate(
    {
        "version": 1,
        "providers": {"p": {"kind": "openai", "base_url": "https://p.test/v1"}},
        "models": {
            "chat": {
                "aliases": ["chat-alias"],
                "deployments": [{"provider": "p", "model": "p-chat"}],
                "prices": {
                    "input": "0.00000015",
                    "output": "0.0000006",
                    "cached_input": "0.000000075",
                    "reasoning": "0.0000012",
                },
                "prices_history": [
                    {
                        "effective_from": "2030-01-01T00:00:00Z",
                        "prices": {"input": "0.000001", "output": "0.000002"},
                    }
                ],
            },
            "embed": {
                "deployments": [{"provider": "p", "model": "p-embed"}],
                "prices": {"input": "0.00000002"},
                "capabilities": ["embeddings"],
            },
        },
    }
)
PRICES = PriceIndex(CATALOG)
BEFORE_CHANGE = datetime(2029, 6, 1, tzinfo=UTC)
AFTER_CHANGE = datetime(2030, 6, 1, tzinfo=UTC)


def _event(
    operation: str = "chat.completions",
    model: str = "chat",
    occurred_at: datetime = BEFORE_CHANGE,
    **usage: int,
) -> UsageRecorded:
    return UsageRecorded.model_validate(
        {
            "request_id": "req",
            "project_id": "proj",
            "operation": operation,
            "model": model,
            "provider": "p",
            "deployment": "p/p-chat",
            "usage": TokenUsage(**usage),
            "occurred_at": occurred_at,
        }
    )


def _exact(raw: bytes) -> Any:
    """JSON with every number read as an exact Decimal (as a careful client would)."""
    return json.loads(raw, parse_float=Decimal, parse_int=Decimal)


def _items(context: Any) -> list[tuple[str, Decimal, Decimal, Decimal, str]]:
    return [
        (i["sku"], i["quantity"], i["unit_price"], i["amount"], i["description"])
        for i in context["generated_usage"]
    ]


def test_chat_line_items_price_cached_and_reasoning_tokens_at_their_rates() -> None:
    event = _event(prompt_tokens=100, cached_tokens=40, completion_tokens=30, reasoning_tokens=10)

    context = _exact(context_json(PRICES, event))

    description = "Inference for AI model 'chat'"
    assert _items(context) == [
        (
            "inference.chat_completions.in",
            60,
            Decimal("0.00000015"),
            Decimal("0.000009"),
            description,
        ),
        (
            "inference.chat_completions.in.cached",
            40,
            Decimal("0.000000075"),
            Decimal("0.000003"),
            description,
        ),
        (
            "inference.chat_completions.out",
            20,
            Decimal("0.0000006"),
            Decimal("0.000012"),
            description,
        ),
        (
            "inference.chat_completions.out.reasoning",
            10,
            Decimal("0.0000012"),
            Decimal("0.000012"),
            description,
        ),
    ]
    assert context["runned_functions"] == []


def test_line_items_are_billings_for_the_same_event() -> None:
    """The same PriceIndex call billing makes: identical items, amounts and order."""
    for event in (
        _event(prompt_tokens=7, completion_tokens=3),
        _event(occurred_at=AFTER_CHANGE, prompt_tokens=7, cached_tokens=2, completion_tokens=3),
        _event("responses", prompt_tokens=5, completion_tokens=9, reasoning_tokens=4),
        _event("embeddings", model="embed", prompt_tokens=8),
    ):
        expected = [
            (i.sku, i.quantity, i.unit_price, i.amount, i.description) for i in PRICES.price(event)
        ]
        assert _items(_exact(context_json(PRICES, event))) == expected


def test_the_price_in_effect_when_the_event_occurred_applies() -> None:
    before = _exact(context_json(PRICES, _event(prompt_tokens=10)))
    after = _exact(context_json(PRICES, _event(occurred_at=AFTER_CHANGE, prompt_tokens=10)))
    assert before["generated_usage"][0]["unit_price"] == Decimal("0.00000015")
    assert after["generated_usage"][0]["unit_price"] == Decimal("0.000001")


def test_amounts_are_plain_exact_numerals() -> None:
    raw = context_json(PRICES, _event(prompt_tokens=138, completion_tokens=1))
    assert b'"amount":0.0000207,' in raw and b"e-" not in raw.lower()


def test_no_event_or_an_unpriceable_one_has_no_line_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    empty = {"generated_usage": [], "runned_functions": []}
    assert orjson.loads(context_json(PRICES, None)) == empty
    inconsistent = _event(prompt_tokens=1, cached_tokens=5)  # billing terminates this one
    with caplog.at_level(logging.WARNING, logger="router.generation"):
        assert orjson.loads(context_json(PRICES, inconsistent)) == empty
    assert "cannot be priced" in caplog.text


def test_with_context_adds_the_key_last_and_keeps_the_rest() -> None:
    body = b'{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":3}}'
    context = context_json(PRICES, _event(prompt_tokens=3))

    out = orjson.loads(with_context(body, context))

    assert list(out) == ["id", "object", "usage", "generation_context"]
    assert out["generation_context"] == orjson.loads(context)
    assert {k: v for k, v in out.items() if k != "generation_context"} == orjson.loads(body)


@pytest.mark.parametrize("body", [b"[1]", b"not json", b'"text"'])
def test_with_context_refuses_a_body_that_is_not_an_object(body: bytes) -> None:
    with pytest.raises(ProviderUnavailable):
        with_context(body, b"{}")


def test_a_stream_chunk_carries_it_last_and_keeps_the_rest() -> None:
    last = b'{"id":"chatcmpl-s","object":"chat.completion.chunk","created":17,"model":"m-1",'
    last += b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
    context = context_json(PRICES, _event(prompt_tokens=2, completion_tokens=1))

    event = GenerationContext.on_chunk(context, last)

    assert event.chunk is not None
    chunk = orjson.loads(event.chunk)
    assert list(chunk) == ["id", "object", "created", "model", "choices", "generation_context"]
    assert chunk["generation_context"] == orjson.loads(context)
    assert chunk["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert event.value == context
