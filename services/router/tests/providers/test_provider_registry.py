from __future__ import annotations

from typing import get_args

import httpx
import pytest

from gateway_common.catalog import CatalogError, ProviderEntry, parse_catalog
from router.providers.registry import FACTORIES, build_adapters


def _transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json={"data": []}))


@pytest.mark.timeout(5)
async def test_key_comes_from_the_named_environment_variable(catalog_text: str) -> None:
    text = catalog_text.replace(
        "base_url: https://primary.test/v1",
        "base_url: https://primary.test/v1\n    api_key_env: PRIMARY_KEY",
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"data": []})

    adapters = build_adapters(
        parse_catalog(text), {"PRIMARY_KEY": "sk-env"}, transport=httpx.MockTransport(handler)
    )
    try:
        await adapters["primary"].list_models()
        await adapters["backup"].list_models()
    finally:
        for adapter in adapters.values():
            await adapter.aclose()
    assert seen == ["Bearer sk-env", ""]


@pytest.mark.timeout(5)
async def test_unchanged_entries_keep_their_adapter(catalog_text: str) -> None:
    first = parse_catalog(catalog_text)
    old = build_adapters(first, {}, transport=_transport())
    second = parse_catalog(
        catalog_text.replace("https://backup.test/v1", "https://backup2.test/v1")
    )
    reuse = {name: (first.providers[name], adapter) for name, adapter in old.items()}
    new = build_adapters(second, {}, reuse=reuse, transport=_transport())
    assert new["primary"] is old["primary"]
    assert new["backup"] is not old["backup"]
    for adapter in {*old.values(), *new.values()}:
        await adapter.aclose()


def test_unsupported_kind_is_refused(catalog_text: str) -> None:
    catalog = parse_catalog(catalog_text.replace("kind: openai", "kind: anthropic", 1))
    only_openai = {"openai": FACTORIES["openai"]}
    with pytest.raises(
        CatalogError, match=r"providers\.primary: kind 'anthropic' is not supported"
    ):
        build_adapters(catalog, {}, factories=only_openai)


def test_every_catalog_kind_has_an_adapter() -> None:
    kinds = ProviderEntry.model_fields["kind"].annotation
    assert set(FACTORIES) == set(get_args(kinds))
