from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from gateway_common.catalog import (
    BreakerPolicy,
    CatalogError,
    CatalogFile,
    load_catalog,
    parse_catalog,
    split_provider,
)

ROOT = Path(__file__).resolve().parents[3]

GOOD = """
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
models:
  m:
    aliases: [m-latest]
    deployments: [{provider: fake, model: upstream-m}]
    prices: {input: "0.000000075", output: "0.0000003"}
"""


def test_shipped_catalogs_are_valid() -> None:
    dev = load_catalog(ROOT / "config" / "catalog.yaml")
    assert {"mock-chat", "mock-reasoning", "mock-embed"} <= set(dev.models)
    assert "responses" in dev.models["mock-reasoning"].capabilities
    assert "responses" not in dev.models["mock-chat"].capabilities
    load_catalog(ROOT / "deploy" / "k8s" / "base" / "catalog.yaml")


def test_prices_are_exact_decimals_and_aliases_resolve() -> None:
    cat = parse_catalog(GOOD)
    name, model = cat.resolve("m-latest") or ("", None)
    assert name == "m"
    assert model is not None
    assert model.prices.input * 276 == Decimal("0.0000207")
    assert cat.resolve("nope") is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.replace("version: 1", "version: 1\nsurprise: 1"), "surprise"),
        (GOOD.replace("provider: fake", "provider: ghost"), "unknown provider 'ghost'"),
        (GOOD.replace("kind: openai", "kind: carrier-pigeon"), "kind"),
        (GOOD.replace('input: "0.000000075"', 'input: "-1"'), "input"),
        (GOOD.replace('/v1"}', '/v1", breaker: {probes: 2}}'), "probes"),
        (GOOD.replace('/v1"}', '/v1", breaker: {cooldown_s: 0}}'), "cooldown_s"),
        (GOOD.replace('/v1"}', '/v1", breaker: {failure_rate: 2}}'), "failure_rate"),
        ("providers: [", "not valid YAML"),
    ],
)
def test_bad_catalogs_are_refused_with_the_reason(text: str, needle: str) -> None:
    with pytest.raises(CatalogError, match=needle):
        parse_catalog(text)


def test_secrets_are_referenced_not_inlined() -> None:
    with pytest.raises(CatalogError, match="api_key"):
        parse_catalog(
            GOOD.replace('base_url: "http://127.0.0.1:1/v1"', 'base_url: "x", api_key: sk-1')
        )


def test_catalog_file_rebuilds_on_change_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(GOOD)
    now = [0.0]
    live = CatalogFile(path, lambda c: sorted(c.models), check_interval_s=5, clock=lambda: now[0])
    assert live.current() == ["m"]

    path.write_text(GOOD.replace("  m:\n", "  m2:\n"))
    os.utime(path, ns=(1, 1))  # a new mtime even within the file system's resolution
    assert live.current() == ["m"]  # not checked again before the interval
    assert live.current(force=True) == ["m2"]

    path.write_text("providers: [")
    os.utime(path, ns=(2, 2))
    now[0] = 10.0
    assert live.current() == ["m2"]  # a broken file leaves the previous version in force


def test_split_provider() -> None:
    assert split_provider("openai:gpt-4o") == ("openai", "gpt-4o")
    assert split_provider("@openai/gpt-4o") == ("openai", "gpt-4o")
    assert split_provider("gpt-4o") is None
    assert split_provider("openai:") is None


BREAKERS = """
version: 1
resilience:
  breaker: {consecutive_failures: 3, window_s: 60}
providers:
  plain: {kind: openai, base_url: "https://plain.test/v1"}
  empty: {kind: openai, base_url: "https://empty.test/v1", breaker: {}}
  flaky:
    kind: openai
    base_url: "https://flaky.test/v1"
    breaker: {consecutive_failures: 10, cooldown_s: 45}
models:
  m:
    deployments: [{provider: plain, model: a}, {provider: flaky, model: b}]
"""


def test_a_providers_breaker_block_overrides_only_the_fields_it_sets() -> None:
    cat = parse_catalog(BREAKERS)
    catalog_wide = BreakerPolicy(consecutive_failures=3, window_s=60)
    assert cat.breaker_policy("plain") == catalog_wide == cat.breaker_policy("empty")
    assert cat.breaker_policy("flaky") == BreakerPolicy(
        consecutive_failures=10, window_s=60, cooldown_s=45
    )


def test_a_breaker_only_change_keeps_the_same_client() -> None:
    old = parse_catalog(BREAKERS).providers["flaky"]
    new = parse_catalog(BREAKERS.replace("cooldown_s: 45", "cooldown_s: 5")).providers["flaky"]
    moved = parse_catalog(BREAKERS.replace("flaky.test", "flaky2.test")).providers["flaky"]
    assert old != new and old.same_client(new)
    assert not old.same_client(moved)
