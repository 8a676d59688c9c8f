"""The price book: the catalog file's prices, re-read when it changes, last good kept."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from billing.pricing import PriceBook
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import UnknownModel


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
