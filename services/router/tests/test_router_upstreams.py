"""Managed credentials with their own base URL: SSRF check per call, bounded client cache.

The conftest catalog (providers ``primary`` and ``backup``, model ``chat-model``)
over ``httpx.MockTransport``; custom-URL adapters get the same transport
through the factories ``CustomUpstreams`` is given. Address literals keep DNS
out of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_common.catalog import Catalog, ProviderEntry
from gateway_common.errors import PermissionDenied
from router.catalog import LiveCatalog
from router.failover import Failover, RouteInfo
from router.metrics import RouterMetrics
from router.providers import openai_compat
from router.providers.base import ProviderAdapter, Usage
from router.providers.registry import AdapterFactory, build_adapters
from router.service import Call, RouterService
from router.upstreams import CustomUpstreams
from router.usage import Payer

MANAGED = "sk-managed-primary-0123456789"
CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "primary-chat",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@dataclass
class Seen:
    """Every upstream request: (URL, Authorization header)."""

    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(200, json=ANSWER)


class NoUsage:
    """A ``UsageSink`` that records nothing (usage is not what these tests look at)."""

    async def record(self, *_: Any, **__: Any) -> None:
        return None


def _factories(transport: httpx.AsyncBaseTransport) -> Mapping[str, AdapterFactory]:
    def build(name: str, entry: ProviderEntry, api_key: str | None, **_: Any) -> ProviderAdapter:
        return openai_compat.build(name, entry, api_key, transport=transport)

    return {"openai": build}


def _call(base_urls: Mapping[str, str], *, byok: str | None = None) -> Call:
    return Call(
        "chat.completions",
        "chat-model",
        CHAT,
        Payer("req-1", "proj-1", "key-1", byok=byok is not None),
        provider_key=byok,
        credentials={"primary": MANAGED},
        base_urls=base_urls,
    )


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def live(
    catalog_file: Path, metrics: RouterMetrics, seen: Seen
) -> AsyncIterator[LiveCatalog]:
    transport = httpx.MockTransport(seen)

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {}, reuse=reuse, transport=transport)

    catalog = LiveCatalog(catalog_file, build, metrics)
    await catalog.load()
    try:
        yield catalog
    finally:
        await catalog.aclose()


def _service(
    live: LiveCatalog, metrics: RouterMetrics, seen: Seen, *, allow_private: bool
) -> tuple[RouterService, CustomUpstreams]:
    transport = httpx.MockTransport(seen)
    upstreams = CustomUpstreams(allow_private=allow_private, factories=_factories(transport))
    return RouterService(live, Failover(metrics), NoUsage(), upstreams), upstreams


@pytest.mark.timeout(10)
async def test_a_loopback_base_url_is_refused_without_the_operator_flag(
    live: LiveCatalog, metrics: RouterMetrics, seen: Seen
) -> None:
    service, upstreams = _service(live, metrics, seen, allow_private=False)
    with pytest.raises(PermissionDenied) as caught:
        await service.complete(_call({"primary": "http://127.0.0.1:9/v1"}), deadline=None)
    err = caught.value
    assert err.code == "unsafe_base_url" and not err.retryable and err.http_status == 403
    assert "`primary`" in err.message and "a loopback address" in err.message
    assert MANAGED not in err.message
    assert seen.requests == [] and len(upstreams) == 0
    await upstreams.aclose()


@pytest.mark.timeout(10)
async def test_metadata_addresses_are_refused_even_with_the_flag(
    live: LiveCatalog, metrics: RouterMetrics, seen: Seen
) -> None:
    service, upstreams = _service(live, metrics, seen, allow_private=True)
    with pytest.raises(PermissionDenied, match="metadata"):
        await service.complete(_call({"primary": "http://169.254.169.254/v1"}), deadline=None)
    await upstreams.aclose()


@pytest.mark.timeout(10)
async def test_with_the_flag_the_call_goes_to_the_credentials_url_with_its_key_only(
    live: LiveCatalog, metrics: RouterMetrics, seen: Seen
) -> None:
    service, upstreams = _service(live, metrics, seen, allow_private=True)
    completion, info = await service.complete(
        _call({"primary": "http://127.0.0.1:9/custom/v1"}), deadline=None
    )
    assert isinstance(info, RouteInfo) and info.provider == "primary"
    assert isinstance(completion.usage, Usage)
    assert seen.requests == [("http://127.0.0.1:9/custom/v1/chat/completions", f"Bearer {MANAGED}")]
    # The same URL again reuses its client.
    await service.complete(_call({"primary": "http://127.0.0.1:9/custom/v1"}), deadline=None)
    assert len(upstreams) == 1
    await upstreams.aclose()


@pytest.mark.timeout(10)
async def test_a_byok_call_ignores_the_credentials_url(
    live: LiveCatalog, metrics: RouterMetrics, seen: Seen
) -> None:
    service, upstreams = _service(live, metrics, seen, allow_private=False)
    await service.complete(
        _call({"primary": "http://127.0.0.1:9/v1"}, byok="sk-own"), deadline=None
    )
    assert seen.requests == [("https://primary.test/v1/chat/completions", "Bearer sk-own")]
    await upstreams.aclose()


class Closable:
    """An adapter stand-in that only records being closed."""

    def __init__(self, name: str, entry: ProviderEntry) -> None:
        self.name, self.base_url, self.closed = name, entry.base_url, False

    async def aclose(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True


@pytest.mark.timeout(10)
async def test_the_client_cache_is_bounded_and_closes_what_it_drops() -> None:
    made: list[Closable] = []

    def build(name: str, entry: ProviderEntry, api_key: str | None, **_: Any) -> Any:
        assert api_key is None  # the operator's configured key never goes to a custom URL
        made.append(Closable(name, entry))
        return made[-1]

    upstreams = CustomUpstreams(allow_private=False, max_clients=2, factories={"openai": build})
    entry = ProviderEntry(kind="openai", base_url="https://primary.test/v1", api_key_env="K")
    urls = ["https://1.1.1.1/v1", "https://1.0.0.1/v1", "https://8.8.8.8/v1"]

    held = await upstreams.acquire("primary", entry, urls[0])  # in use while evicted
    for url in urls[1:]:
        await upstreams.release(await upstreams.acquire("primary", entry, url))
    assert len(upstreams) == 2
    assert [a.base_url for a in made] == urls
    assert not made[0].closed  # evicted, but a call still holds it
    await upstreams.release(held)
    assert made[0].closed

    # The least recently used goes next: urls[1] (urls[2] is used again first).
    await upstreams.release(await upstreams.acquire("primary", entry, urls[2]))
    await upstreams.release(await upstreams.acquire("primary", entry, urls[0]))
    assert made[1].closed and not made[2].closed and not made[3].closed

    await upstreams.aclose()
    assert all(a.closed for a in made) and len(upstreams) == 0
