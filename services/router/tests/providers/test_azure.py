"""The Azure OpenAI dialect: deployment-scoped URLs, ``api-version``, the ``api-key`` header."""

from __future__ import annotations

import httpx
import orjson
import pytest

from gateway_common.catalog import CatalogError, parse_catalog
from router.providers.base import EmbeddingsAdapter, ProviderRequest
from router.providers.registry import build_adapters

CATALOG = """
version: 1
providers:
  azure:
    kind: azure_openai
    base_url: https://res.openai.azure.com
    api_version: "2024-10-21"
    api_key_env: AZURE_KEY
models:
  chat:
    deployments: [{provider: azure, model: "prod gpt/4o"}]
"""


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": 1}})


@pytest.mark.timeout(5)
async def test_every_operation_goes_to_its_deployment_url_with_the_api_version() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    adapters = build_adapters(
        parse_catalog(CATALOG), {"AZURE_KEY": "az-conf"}, transport=httpx.MockTransport(handler)
    )
    adapter = adapters["azure"]
    assert isinstance(adapter, EmbeddingsAdapter)
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    try:
        await adapter.complete(
            ProviderRequest("chat.completions", body, "prod gpt/4o"), deadline=None
        )
        await adapter.embed(ProviderRequest("embeddings", {"input": "x"}, "emb"), deadline=None)
        await adapter.complete(ProviderRequest("responses", {"input": "x"}, "resp"), deadline=None)
        byok = ProviderRequest("chat.completions", body, "d", provider_key="az-caller")
        await adapter.complete(byok, deadline=None)
    finally:
        await adapter.aclose()
    base = "https://res.openai.azure.com/openai"
    assert [str(r.url) for r in seen] == [
        f"{base}/deployments/prod%20gpt%2F4o/chat/completions?api-version=2024-10-21",
        f"{base}/deployments/emb/embeddings?api-version=2024-10-21",
        f"{base}/responses?api-version=2024-10-21",
        f"{base}/deployments/d/chat/completions?api-version=2024-10-21",
    ]
    assert [r.headers["api-key"] for r in seen] == ["az-conf"] * 3 + ["az-caller"]
    assert all("authorization" not in r.headers for r in seen)
    assert (
        orjson.loads(seen[2].content)["model"] == "resp"
    )  # Responses takes the deployment in the body


@pytest.mark.timeout(5)
async def test_list_models_keeps_the_api_version() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [{"id": "gpt-4o"}]})

    adapters = build_adapters(parse_catalog(CATALOG), {}, transport=httpx.MockTransport(handler))
    try:
        assert await adapters["azure"].list_models() == ("gpt-4o",)
    finally:
        await adapters["azure"].aclose()
    assert str(seen[0].url) == "https://res.openai.azure.com/openai/models?api-version=2024-10-21"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('    api_version: "2024-10-21"\n', ""),
        ("kind: azure_openai", "kind: openai"),
    ],
)
def test_api_version_is_required_for_azure_and_only_for_it(old: str, new: str) -> None:
    with pytest.raises(CatalogError, match="api_version is required for kind azure_openai"):
        parse_catalog(CATALOG.replace(old, new))
