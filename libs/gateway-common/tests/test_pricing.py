"""Shared pricing: exact decimals, the contract's SKU split, effective dates, seed 002 JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from gateway_common.catalog import CatalogError, Prices, parse_catalog
from gateway_common.events import SkuQuantity, TokenUsage, UsageRecorded
from gateway_common.pricing import (
    InconsistentUsage,
    LineItem,
    PriceIndex,
    UnknownModel,
    UnknownSku,
    decimal_text,
    exact_sum,
    generated_usage_json,
    price_usage,
)


def usage_event(model: str = "chat-a", operation: str = "chat.completions", **tokens: int):
    return UsageRecorded(
        request_id="req-1",
        project_id="proj-1",
        operation=operation,
        model=model,
        provider="fake",
        deployment="fake/a",
        usage=TokenUsage(**tokens),
    )


def test_amount_is_quantity_times_price_exactly() -> None:
    items = price_usage(
        usage_event(prompt_tokens=276), Prices(input=Decimal("0.000000075"), output=Decimal(0))
    )
    assert items[0].amount == Decimal("0.0000207")
    assert str(items[0].amount.normalize()) == "0.0000207"
    assert all(type(i.amount) is Decimal and type(i.unit_price) is Decimal for i in items)


def test_chat_splits_cached_and_reasoning_tokens() -> None:
    prices = Prices(
        input=Decimal("0.000000075"),
        output=Decimal("0.0000003"),
        cached_input=Decimal("0.0000000375"),
        reasoning=Decimal("0.0000006"),
    )
    event = usage_event(
        prompt_tokens=1000, cached_tokens=400, completion_tokens=300, reasoning_tokens=120
    )
    desc = "Inference for AI model 'chat-a'"
    assert price_usage(event, prices) == [
        LineItem("inference.chat_completions.in", 600, prices.input, Decimal("0.000045"), desc),
        LineItem(
            "inference.chat_completions.in.cached",
            400,
            Decimal("0.0000000375"),
            Decimal("0.000015"),
            desc,
        ),
        LineItem("inference.chat_completions.out", 180, prices.output, Decimal("0.000054"), desc),
        LineItem(
            "inference.chat_completions.out.reasoning",
            120,
            Decimal("0.0000006"),
            Decimal("0.000072"),
            desc,
        ),
    ]


def test_cached_and_reasoning_fall_back_to_input_and_output_prices() -> None:
    prices = Prices(input=Decimal("0.0000011"), output=Decimal("0.0000044"))
    event = usage_event(
        operation="responses",
        prompt_tokens=10,
        cached_tokens=10,
        completion_tokens=5,
        reasoning_tokens=5,
    )
    items = {i.sku: i for i in price_usage(event, prices)}
    assert list(items) == [
        "inference.responses.in",
        "inference.responses.in.cached",
        "inference.responses.out",
        "inference.responses.out.reasoning",
    ]
    assert items["inference.responses.in"].quantity == 0
    assert items["inference.responses.in.cached"].unit_price == prices.input
    assert items["inference.responses.out.reasoning"].unit_price == prices.output
    assert exact_sum(i.amount for i in items.values()) == Decimal("0.000033")


def test_zero_cached_and_reasoning_lines_are_omitted() -> None:
    items = price_usage(usage_event(prompt_tokens=3, completion_tokens=2), Prices())
    assert [i.sku for i in items] == [
        "inference.chat_completions.in",
        "inference.chat_completions.out",
    ]


def test_embeddings_bill_prompt_tokens_only() -> None:
    event = usage_event(model="embed", operation="embeddings", prompt_tokens=12345)
    [item] = price_usage(event, Prices(input=Decimal("0.00000002")))
    assert (item.sku, item.quantity, item.amount) == (
        "inference.embeddings.in",
        12345,
        Decimal("0.0002469"),
    )


def test_large_products_are_not_rounded() -> None:
    price = Decimal("0.123456789012345678")
    [item, _] = price_usage(
        usage_event(prompt_tokens=2_000_000_000), Prices(input=price, output=Decimal(0))
    )
    assert item.amount == Decimal("246913578.024691356000000000")


def test_more_cached_than_prompt_tokens_is_inconsistent() -> None:
    with pytest.raises(InconsistentUsage):
        price_usage(usage_event(prompt_tokens=1, cached_tokens=2), Prices())
    with pytest.raises(InconsistentUsage):
        price_usage(usage_event(completion_tokens=1, reasoning_tokens=2), Prices())


HISTORY_CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
skus:
  inference.resolving.routing_complexity.in:
    unit_price: "0.000000075"
    description: Inference for model routing
    prices_history:
      - {effective_from: "2026-03-01T00:00:00Z", unit_price: "0.0000001"}
models:
  chat-a:
    aliases: [chat-a-latest]
    deployments: [{provider: fake, model: a}]
    prices: {input: "0.00000025", output: "0.000002", cached_input: "0.000000025"}
    prices_history:
      - effective_from: "2026-02-01T00:00:00Z"
        prices: {input: "0.0000002", output: "0.000002"}
      - effective_from: "2026-03-01T00:00:00+01:00"
        prices: {input: "0.0000003", output: "0.000003", reasoning: "0.000004"}
"""


def dated(moment: str, **tokens: int) -> UsageRecorded:
    return UsageRecorded(
        occurred_at=datetime.fromisoformat(moment),
        request_id="r",
        project_id="p",
        operation="chat.completions",
        model="chat-a-latest",
        provider="fake",
        deployment="fake/a",
        usage=TokenUsage(**tokens),
    )


@pytest.mark.parametrize(
    ("moment", "input_price"),
    [
        ("2026-01-31T23:59:59.999999+00:00", "0.00000025"),  # the base prices
        ("2026-02-01T00:00:00+00:00", "0.0000002"),  # a change applies from its instant on
        ("2026-02-28T22:59:59+00:00", "0.0000002"),
        ("2026-02-28T23:00:00+00:00", "0.0000003"),  # 2026-03-01T00:00+01:00, in UTC
    ],
)
def test_an_event_is_priced_at_the_prices_in_effect_when_it_occurred(
    moment: str, input_price: str
) -> None:
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    [line, _] = index.price(dated(moment, prompt_tokens=10, completion_tokens=1))
    assert line.unit_price == Decimal(input_price)


def test_each_dated_price_set_stands_alone() -> None:
    """A history entry replaces the whole price set: no cached price leaks from the base."""
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    event = dated(
        "2026-02-10T00:00:00+00:00", prompt_tokens=100, cached_tokens=40, completion_tokens=5
    )
    cached = {line.sku: line for line in index.price(event)}["inference.chat_completions.in.cached"]
    assert cached.unit_price == Decimal("0.0000002")  # that period's input price


def test_extra_skus_come_first_at_their_own_dated_price() -> None:
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    sku = "inference.resolving.routing_complexity.in"
    event = dated("2026-01-15T00:00:00+00:00", prompt_tokens=84, completion_tokens=16)
    event = event.model_copy(update={"sku_usage": (SkuQuantity(sku=sku, quantity=276),)})
    lines = index.price(event)
    assert lines[0] == LineItem(
        sku, 276, Decimal("0.000000075"), Decimal("0.0000207"), "Inference for model routing"
    )
    assert [line.sku for line in lines[1:]] == [
        "inference.chat_completions.in",
        "inference.chat_completions.out",
    ]
    later = event.model_copy(update={"occurred_at": datetime(2026, 3, 2, tzinfo=UTC)})
    assert index.price(later)[0].amount == Decimal("0.0000276")


def test_an_event_without_a_model_prices_only_its_skus() -> None:
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    sku = "inference.resolving.routing_complexity.in"
    event = dated("2026-01-15T00:00:00+00:00").model_copy(
        update={"model": "", "sku_usage": (SkuQuantity(sku=sku, quantity=10),)}
    )
    assert [(line.sku, line.quantity) for line in index.price(event)] == [(sku, 10)]


def test_an_own_endpoint_event_prices_only_its_skus_whatever_its_model() -> None:
    """Seed 002's BYOK gateway: the project's own model, tokens and all, is not charged."""
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    sku = "inference.resolving.routing_complexity.in"
    event = dated("2026-01-15T00:00:00+00:00", prompt_tokens=84, completion_tokens=16)
    own = event.model_copy(
        update={
            "model": "my-finetune",  # not in the catalog
            "byok": True,
            "own_endpoint": True,
            "sku_usage": (SkuQuantity(sku=sku, quantity=10),),
        }
    )
    assert [(line.sku, line.quantity) for line in index.price(own)] == [(sku, 10)]


def test_unknown_models_and_skus_are_refused() -> None:
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    with pytest.raises(UnknownModel):
        index.price(dated("2026-01-01T00:00:00+00:00").model_copy(update={"model": "nope"}))
    with pytest.raises(UnknownSku):
        index.price(
            dated("2026-01-01T00:00:00+00:00").model_copy(
                update={"sku_usage": (SkuQuantity(sku="nope", quantity=1),)}
            )
        )


@pytest.mark.parametrize(
    "history",
    [
        '[{effective_from: "2026-02-01T00:00:00", prices: {}}]',  # no zone
        '[{effective_from: "2026-02-01T00:00:00Z", prices: {}},'
        ' {effective_from: "2026-01-01T00:00:00Z", prices: {}}]',  # out of order
    ],
)
def test_a_bad_history_is_refused(history: str) -> None:
    text = HISTORY_CATALOG.split("    prices_history:")[0] + f"    prices_history: {history}\n"
    with pytest.raises(CatalogError):
        parse_catalog(text)


def test_worst_case_takes_the_dearest_rates() -> None:
    index = PriceIndex(parse_catalog(HISTORY_CATALOG))
    march = datetime(2026, 3, 15, tzinfo=UTC)
    cost = index.worst_case("chat-a", march, prompt_tokens=100, max_completion_tokens=10)
    assert cost == Decimal("0.00007")  # 100 * 3e-7 + 10 * 4e-6 (reasoning dearer than output)


def test_generated_usage_json_is_seed_002_shaped_with_exact_numbers() -> None:
    items = [
        LineItem("a.b", 276, Decimal("7.5E-8"), Decimal("0.0000207"), "Inference for 'x'"),
        LineItem("c", 0, Decimal("0.000002"), Decimal("0E-10"), 'quote " ok'),
    ]
    raw = generated_usage_json(items)
    assert raw == (
        b'[{"sku":"a.b","amount":0.0000207,"unit_price":0.000000075,"quantity":276,'
        b'"description":"Inference for \'x\'"},'
        b'{"sku":"c","amount":0,"unit_price":0.000002,"quantity":0,"description":"quote \\" ok"}]'
    )
    parsed = orjson.loads(raw)
    assert parsed[0]["quantity"] == 276
    assert [decimal_text(Decimal(x)) for x in ("1E+3", "-0.0", "2.50")] == ["1000", "0", "2.5"]
