"""Which breaker an attempt answers to, with which settings: a provider's own ``breaker``
block, one breaker per (deployment, custom base URL) kept apart from the deployment's
shared one, the bound on those, and a catalog reload that changes a block."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway_common.catalog import BreakerPolicy, Catalog, ProviderEntry, parse_catalog
from gateway_common.errors import AllProvidersFailed, ProviderUnavailable
from router.breaker import Breakers, State
from router.catalog import LiveCatalog
from router.failover import Failover
from router.metrics import RouterMetrics
from router.providers import openai_compat
from router.providers.base import Completion, ProviderAdapter, StreamChunk
from router.providers.registry import AdapterFactory, build_adapters
from router.routing import Route, RoutingTable
from router.service import Call, RouterService
from router.upstreams import CustomUpstreams
from router.usage import Payer

from .scripted import REQ, Clock, Scripted, complete, sample

pytestmark = pytest.mark.timeout(10)

OK = Completion(b"{}", None)
DOWN = ProviderUnavailable("500")
URL_A = "http://127.0.0.1:9/project-a/v1"
URL_B = "http://127.0.0.1:9/project-b/v1"

#: ``primary`` opens after 2 failures in a row and cools down 30 s; ``backup`` keeps the
#: catalog-wide 4 in a row and the default cool-down (10 s).
CATALOG = """
version: 1
resilience:
  breaker: {consecutive_failures: 4}
  retry: {passes: 1}
providers:
  primary:
    kind: openai
    base_url: https://primary.test/v1
    breaker: {consecutive_failures: 2, cooldown_s: 30}
  backup:
    kind: openai
    base_url: https://backup.test/v1
models:
  chat-model:
    deployments:
      - {provider: primary, model: primary-chat}
      - {provider: backup, model: backup-chat}
"""

PRIMARY = "primary/primary/primary-chat"
BACKUP = "backup/backup/backup-chat"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failover(metrics: RouterMetrics, clock: Clock) -> Failover:
    return Failover(metrics, clock=clock, sleep=clock.sleep, rng=random.Random(7))


def _table(primary: Scripted, backup: Scripted, text: str = CATALOG) -> RoutingTable:
    return RoutingTable(parse_catalog(text), {"primary": primary, "backup": backup})


def _custom(route: Route, adapter: ProviderAdapter, base_url: str) -> Route:
    """``route`` with its ``primary`` candidate moved to ``base_url`` (as ``CustomUpstreams``)."""
    candidates = tuple(
        replace(c, adapter=adapter, upstream=base_url) if c.provider == "primary" else c
        for c in route.candidates
    )
    return replace(route, candidates=candidates)


def _shared_state(registry: CollectorRegistry, provider: str, deployment: str) -> float | None:
    return registry.get_sample_value(
        "switchyard_router_breaker_state", {"provider": provider, "deployment": deployment}
    )


def _custom_open(registry: CollectorRegistry) -> float:
    return sample(
        registry,
        "switchyard_router_custom_upstream_breakers_open",
        provider="primary",
        deployment="primary/primary-chat",
    )


# -- settings per provider --------------------------------------------------------------------


def test_candidates_carry_their_providers_breaker_settings() -> None:
    route = _table(Scripted("primary"), Scripted("backup")).resolve("chat-model")
    primary, backup = (c.breaker for c in route.candidates)
    assert primary == BreakerPolicy(consecutive_failures=2, cooldown_s=30)
    assert backup == BreakerPolicy(consecutive_failures=4) == route.policy.breaker


async def test_each_deployment_opens_at_its_providers_threshold(
    failover: Failover, clock: Clock
) -> None:
    primary, backup = Scripted("primary", DOWN), Scripted("backup", DOWN)
    route = _table(primary, backup).resolve("chat-model")
    for _ in range(4):
        with pytest.raises(AllProvidersFailed):
            await failover.call(route, REQ, complete, deadline=None)
    # primary opened after 2 calls and was skipped after; backup opened on the 4th.
    assert (len(primary.requests), len(backup.requests)) == (2, 4)
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(route, REQ, complete, deadline=None)
    retry_after = {name: err.retry_after for name, err in caught.value.failures}  # type: ignore[attr-defined]
    assert retry_after == {PRIMARY: 30, BACKUP: 10}  # each its own cool-down


# -- a breaker per custom upstream ------------------------------------------------------------


async def test_a_broken_custom_url_opens_only_its_own_breaker(
    failover: Failover, registry: CollectorRegistry
) -> None:
    primary, backup, broken = Scripted("primary"), Scripted("backup"), Scripted("primary", DOWN)
    shared = _table(primary, backup).resolve("chat-model")
    project_a = _custom(shared, broken, URL_A)

    for _ in range(2):  # primary's threshold: 2 in a row
        _, info = await failover.call(project_a, REQ, complete, deadline=None)
        assert (info.provider, info.attempts) == ("backup", 2)  # failed over as usual
    assert failover.breakers.custom(PRIMARY, URL_A).state is State.OPEN
    assert _custom_open(registry) == 1

    # Project A now skips its URL at once and is served by the next deployment ...
    _, info = await failover.call(project_a, REQ, complete, deadline=None)
    assert (info.provider, info.attempts, len(broken.requests)) == ("backup", 1, 2)
    # ... while every other project is still served by primary, whose breaker saw nothing.
    for _ in range(3):
        _, info = await failover.call(shared, REQ, complete, deadline=None)
        assert (info.provider, info.attempts) == ("primary", 1)
    assert failover.breakers[PRIMARY].state is State.CLOSED
    assert _shared_state(registry, "primary", "primary/primary-chat") == 0
    # Another project's URL for the same deployment has a breaker of its own.
    _, info = await failover.call(_custom(shared, primary, URL_B), REQ, complete, deadline=None)
    assert (info.provider, info.attempts) == ("primary", 1)


async def test_the_skip_names_the_custom_url_without_showing_it(failover: Failover) -> None:
    broken = Scripted("primary", DOWN)
    route = _table(broken, Scripted("backup", DOWN)).resolve("chat-model")
    project_a = _custom(route, broken, URL_A)
    for _ in range(2):
        with pytest.raises(AllProvidersFailed):
            await failover.call(project_a, REQ, complete, deadline=None)
    with pytest.raises(AllProvidersFailed) as caught:
        await failover.call(project_a, REQ, complete, deadline=None)
    name, err = caught.value.failures[0]
    assert (name, err.code) == (PRIMARY, "circuit_open")
    assert "custom base URL" in err.message and "127.0.0.1" not in err.message


async def test_the_shared_breaker_does_not_stop_a_custom_url(
    failover: Failover, registry: CollectorRegistry
) -> None:
    down, backup, healthy = Scripted("primary", DOWN), Scripted("backup"), Scripted("primary")
    shared = _table(down, backup).resolve("chat-model")
    for _ in range(2):
        await failover.call(shared, REQ, complete, deadline=None)
    assert failover.breakers[PRIMARY].state is State.OPEN
    _, info = await failover.call(_custom(shared, healthy, URL_A), REQ, complete, deadline=None)
    assert (info.provider, info.attempts, len(healthy.requests)) == ("primary", 1, 1)
    assert failover.breakers.custom(PRIMARY, URL_A).state is State.CLOSED
    assert _custom_open(registry) == 0


async def test_a_custom_stream_failing_after_its_first_chunk_counts_against_its_own_breaker(
    failover: Failover,
) -> None:
    broken = Scripted("primary", steps=[StreamChunk(b"1"), DOWN])
    # A committed stream's first chunk was a success: only one failure in a row per stream.
    text = CATALOG.replace("consecutive_failures: 2", "consecutive_failures: 1")
    route = _table(Scripted("primary"), Scripted("backup"), text).resolve("chat-model")
    committed = await failover.stream(_custom(route, broken, URL_A), REQ, deadline=None)
    with pytest.raises(ProviderUnavailable):
        async for _ in committed:
            pass
    await committed.aclose()
    assert failover.breakers.custom(PRIMARY, URL_A).state is State.OPEN
    assert failover.breakers[PRIMARY].state is State.CLOSED


# -- the bound --------------------------------------------------------------------------------


def test_custom_breakers_are_bounded_dropping_the_least_recently_used_closed_one(
    metrics: RouterMetrics, clock: Clock, registry: CollectorRegistry
) -> None:
    policy = BreakerPolicy(consecutive_failures=1)
    breakers = Breakers(metrics, clock, max_custom=3)
    urls = [f"https://{n}.example/v1" for n in range(6)]
    first = breakers.custom("p/d", urls[0])
    first.failed(policy)  # open: kept over closed ones
    second = breakers.custom("p/d", urls[1])
    breakers.custom("p/d", urls[2])
    breakers.custom("p/d", urls[1])  # used again: urls[2] is now the least recent closed one
    breakers.custom("p/d", urls[3])
    assert breakers.custom_count() == 3
    assert breakers.custom("p/d", urls[0]) is first and first.state is State.OPEN
    assert breakers.custom("p/d", urls[1]) is second
    assert breakers.custom_count() == 3  # those lookups found them: nothing new, nothing dropped
    assert sample(registry, "switchyard_router_custom_upstream_breakers") == 3

    # When every one is open, the least recently used goes anyway: the bound is hard.
    for url in urls[1], urls[3]:
        breakers.custom("p/d", url).failed(policy)
    opened = sample(
        registry,
        "switchyard_router_custom_upstream_breakers_open",
        provider="p",
        deployment="d",
    )
    assert opened == 3
    breakers.custom("p/d", urls[4])
    assert breakers.custom_count() == 3
    assert breakers.custom("p/d", urls[0]) is not first  # urls[0] was the least recent
    # urls[0] is back (closed) and urls[4] made room for it: urls[1] and urls[3] stay open.
    # The dropped breaker no longer counts, even when an attempt that held it ends later.
    clock.now += 10
    assert first.admit(policy)
    first.succeeded(policy)
    opened = sample(
        registry,
        "switchyard_router_custom_upstream_breakers_open",
        provider="p",
        deployment="d",
    )
    assert opened == 2


def test_a_custom_breaker_bound_below_one_is_refused(metrics: RouterMetrics) -> None:
    with pytest.raises(ValueError, match="max_custom"):
        Breakers(metrics, Clock(), max_custom=0)


# -- end to end through the service: credentials' base URLs over a mock transport ------------


class NoUsage:
    """A ``UsageSink`` that records nothing."""

    async def record(self, *_: Any, **__: Any) -> None:
        return None


ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def _call(project: str, base_urls: Mapping[str, str]) -> Call:
    return Call(
        "chat.completions",
        "chat-model",
        {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]},
        Payer(f"req-{project}", project, "key-1", byok=False),
        credentials={"primary": f"sk-{project}-0123456789"},
        base_urls=base_urls,
    )


async def test_a_projects_broken_base_url_leaves_the_deployment_to_the_others(
    tmp_path: Path, metrics: RouterMetrics
) -> None:
    hosts: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        hosts.append(f"{request.url.host}{request.url.path}")
        if request.url.path.startswith("/project-a/"):
            return httpx.Response(500, json={"error": {"message": "broken"}})
        return httpx.Response(200, json=ANSWER)

    transport = httpx.MockTransport(upstream)

    def factory(name: str, entry: ProviderEntry, api_key: str | None, **_: Any) -> ProviderAdapter:
        return openai_compat.build(name, entry, api_key, transport=transport)

    factories: Mapping[str, AdapterFactory] = {"openai": factory}

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {}, reuse=reuse, factories=factories)

    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    live = LiveCatalog(path, build, metrics)
    await live.load()
    upstreams = CustomUpstreams(allow_private=True, factories=factories)
    service = RouterService(live, Failover(metrics), NoUsage(), upstreams)
    try:
        for _ in range(3):
            _, info = await service.complete(_call("a", {"primary": URL_A}), deadline=None)
            assert info.provider == "backup"
        assert hosts.count("127.0.0.1/project-a/v1/chat/completions") == 2  # then skipped
        _, info = await service.complete(_call("b", {}), deadline=None)
        assert (info.provider, info.attempts) == ("primary", 1)
        assert hosts[-1] == "primary.test/v1/chat/completions"
    finally:
        await upstreams.aclose()
        await live.aclose()


# -- reload -----------------------------------------------------------------------------------


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


async def test_a_reload_with_a_changed_block_keeps_state_clients_and_applies_the_new_settings(
    tmp_path: Path, metrics: RouterMetrics, clock: Clock
) -> None:
    def factory(name: str, entry: ProviderEntry, api_key: str | None, **_: Any) -> Scripted:
        return Scripted(name, DOWN)

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {}, reuse=reuse, factories={"openai": factory})  # type: ignore[dict-item]

    path = tmp_path / "catalog.yaml"
    looser = CATALOG.replace("consecutive_failures: 2, cooldown_s: 30", "consecutive_failures: 9")
    path.write_text(looser)
    live = LiveCatalog(path, build, metrics)
    await live.load()
    failover = Failover(metrics, clock=clock, sleep=clock.sleep)
    before = live.table
    for _ in range(2):
        with pytest.raises(AllProvidersFailed):
            await failover.call(before.resolve("chat-model"), REQ, complete, deadline=None)
    breaker = failover.breakers[PRIMARY]
    assert breaker.state is State.CLOSED  # 2 of 9

    _rewrite(path, CATALOG)  # primary: 2 in a row, 30 s cool-down
    assert await live.reload_if_changed()
    after = live.table
    assert after.adapters["primary"] is before.adapters["primary"]  # the client is kept
    route = after.resolve("chat-model")
    assert route.candidates[0].breaker == BreakerPolicy(consecutive_failures=2, cooldown_s=30)
    assert failover.breakers[PRIMARY] is breaker and breaker.state is State.CLOSED
    with pytest.raises(AllProvidersFailed):
        await failover.call(route, REQ, complete, deadline=None)
    assert breaker.state is State.OPEN  # the kept count (2), one more, the new threshold (2)
    assert breaker.retry_in(route.candidates[0].breaker or BreakerPolicy()) == 30

    # A block that does not validate is refused and the catalog in force stays.
    _rewrite(path, CATALOG.replace("cooldown_s: 30", "cooldown_s: 30, half_open_calls: 2"))
    assert not await live.reload_if_changed()
    assert live.table is after
    await live.aclose()
