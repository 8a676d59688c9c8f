"""Pricing is exact decimal arithmetic over the catalog, with the contract's SKU split."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from billing.pricing import (
    InconsistentUsage,
    LineItem,
    PriceBook,
    UnknownModel,
    exact_sum,
    price_usage,
)
from gateway_common.catalog import Prices
from gateway_common.events import TokenUsage, UsageRecorded


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


def test_price_book_resolves_aliases_and_refuses_unknown_models(catalog_path: Path) -> None:
    book = PriceBook(catalog_path)
    [item, _] = book.price(usage_event(model="chat-a-latest", prompt_tokens=276))
    assert item.amount == Decimal("0.0000207")
    with pytest.raises(UnknownModel, match="no-such-model"):
        book.price(usage_event(model="no-such-model"))


def test_price_book_reloads_when_the_file_changes(catalog_path: Path) -> None:
    now = [0.0]
    book = PriceBook(catalog_path, check_interval_s=5, clock=lambda: now[0])
    catalog_path.write_text(catalog_path.read_text().replace('"0.000000075"', '"0.0000001"'))
    os.utime(catalog_path, ns=(1, 1))  # a distinct mtime even on coarse clocks
    event = usage_event(prompt_tokens=10)
    assert book.price(event)[0].unit_price == Decimal("0.000000075")  # not checked yet
    now[0] = 5.0
    assert book.price(event)[0].unit_price == Decimal("0.0000001")


def test_price_book_keeps_the_last_good_catalog(catalog_path: Path) -> None:
    now = [0.0]
    book = PriceBook(catalog_path, check_interval_s=1, clock=lambda: now[0])
    catalog_path.write_text("version: 1\nmodels: [")
    os.utime(catalog_path, ns=(1, 1))
    now[0] = 2.0
    assert book.price(usage_event(prompt_tokens=10))[0].unit_price == Decimal("0.000000075")


def test_a_model_added_since_the_last_check_is_found(catalog_path: Path) -> None:
    book = PriceBook(catalog_path, check_interval_s=3600, clock=lambda: 0.0)
    catalog_path.write_text(catalog_path.read_text().replace("chat-b:", "chat-new:"))
    os.utime(catalog_path, ns=(1, 1))
    assert book.price(usage_event(model="chat-new", prompt_tokens=1))[0].quantity == 1
