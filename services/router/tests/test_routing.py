from __future__ import annotations

import pytest

from gateway_common.catalog import parse_catalog
from gateway_common.errors import ModelNotFound
from router.routing import RoutingTable, split_provider


class _Adapter:
    def __init__(self, name: str) -> None:
        self.name = name


def _table(text: str) -> RoutingTable:
    catalog = parse_catalog(text)
    return RoutingTable(catalog, {name: _Adapter(name) for name in catalog.providers})  # type: ignore[misc]


@pytest.fixture
def table(catalog_text: str) -> RoutingTable:
    return _table(catalog_text)


def _deployments(table: RoutingTable, model: str) -> list[tuple[str, str]]:
    return [(c.provider, c.provider_model) for c in table.resolve(model).candidates]


def test_public_name_keeps_catalog_order(table: RoutingTable) -> None:
    route = table.resolve("chat-model")
    assert route.model == "chat-model"
    assert _deployments(table, "chat-model") == [
        ("primary", "primary-chat"),
        ("backup", "backup-chat"),
    ]
    assert route.candidates[0].adapter is table.adapters["primary"]
    assert route.candidates[1].key == "backup/backup/backup-chat"


def test_alias_resolves_to_the_public_name(table: RoutingTable) -> None:
    assert table.resolve("chat-alias").model == "chat-model"


@pytest.mark.parametrize("model", ["backup:chat-model", "@backup/chat-model", "backup:chat-alias"])
def test_provider_prefix_restricts_deployments(table: RoutingTable, model: str) -> None:
    assert table.resolve(model).model == "chat-model"
    assert _deployments(table, model) == [("backup", "backup-chat")]


@pytest.mark.parametrize(
    "model",
    [
        "nope",
        "primary:nope",
        "@primary/nope",
        "mystery:chat-model",
        "@mystery/chat-model",
        "primary:embed-model",
        "",
    ],
)
def test_unknown_model_or_provider(table: RoutingTable, model: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        table.resolve(model)
    assert (
        caught.value.message
        == f"The model `{model}` does not exist or you do not have access to it."
    )
    assert caught.value.param == "model"
    assert caught.value.http_status == 404


def test_a_resolved_route_is_remembered_and_an_unknown_model_is_not(
    table: RoutingTable,
) -> None:
    assert table.resolve("chat-alias") is table.resolve("chat-alias")
    assert table.resolve("backup:chat-model") is table.resolve("backup:chat-model")
    for _ in range(2):
        with pytest.raises(ModelNotFound):
            table.resolve("no-such-model")
    assert set(table._routes) == {"chat-alias", "backup:chat-model"}


def test_a_public_name_with_a_colon_is_not_a_prefix(catalog_text: str) -> None:
    table = _table(catalog_text.replace("chat-model:", '"primary:chat-model":', 1))
    assert table.resolve("primary:chat-model").model == "primary:chat-model"
    assert len(table.resolve("primary:chat-model").candidates) == 2
    table = _table(catalog_text.replace("chat-model:", '"ft:chat-model:org":', 1))
    assert table.resolve("ft:chat-model:org").model == "ft:chat-model:org"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai:gpt-4o", ("openai", "gpt-4o")),
        ("@openai/gpt-4o", ("openai", "gpt-4o")),
        ("@openai/org/model", ("openai", "org/model")),
        ("gpt-4o", None),
        (":gpt-4o", None),
        ("@openai", None),
        ("openai:", None),
    ],
)
def test_split_provider(model: str, expected: tuple[str, str] | None) -> None:
    assert split_provider(model) == expected


_BYOK_CATALOG = """
version: 1
providers:
  a: {kind: openai, base_url: "https://a.test/v1"}
  b: {kind: openai, base_url: "https://b.test/v1"}
models:
  listed:
    deployments:
      - {provider: a, model: a-1}
      - {provider: b, model: b-1}
      - {provider: a, model: a-2}
  prioritized:
    deployments:
      - {provider: a, model: a-1, priority: 1}
      - {provider: b, model: b-1, priority: 0}
      - {provider: b, model: b-2, priority: 2}
"""


@pytest.mark.parametrize(
    ("model", "kept"),
    [
        ("listed", [("a", "a-1"), ("a", "a-2")]),  # the first deployment's provider
        ("prioritized", [("b", "b-1"), ("b", "b-2")]),  # the lowest priority group's
        ("b:listed", [("b", "b-1")]),  # the provider a prefix forced
    ],
)
def test_one_provider_keeps_the_primary_providers_deployments(
    model: str, kept: list[tuple[str, str]]
) -> None:
    route = _table(_BYOK_CATALOG).resolve(model).one_provider()
    assert [(c.provider, c.provider_model) for c in route.candidates] == kept


def test_one_provider_on_a_single_provider_route_is_the_route_itself(table: RoutingTable) -> None:
    route = table.resolve("@backup/chat-model")
    assert route.one_provider() is route


def test_the_table_prices_its_catalog(table: RoutingTable) -> None:
    assert table.prices.knows("chat-model") and table.prices.knows("chat-alias")
