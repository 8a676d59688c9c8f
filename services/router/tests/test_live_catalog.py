from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.catalog import Catalog, CatalogError, ProviderEntry
from router.catalog import LiveCatalog
from router.metrics import RouterMetrics
from router.providers.base import ProviderAdapter
from router.providers.registry import build_adapters


class Recorded:
    """A provider adapter that only remembers whether it was closed."""

    def __init__(self, name: str, entry: ProviderEntry) -> None:
        self.name = name
        self.base_url = entry.base_url
        self.closed = asyncio.Event()

    async def aclose(self) -> None:
        self.closed.set()


def _factory(
    name: str, entry: ProviderEntry, api_key: str | None, *, transport: object = None
) -> Recorded:
    return Recorded(name, entry)


def _build(
    catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
) -> Mapping[str, ProviderAdapter]:
    return build_adapters(catalog, {}, reuse=reuse, factories={"openai": _factory})  # type: ignore[dict-item]


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


async def _live(path: Path, metrics: RouterMetrics, **kw: float) -> LiveCatalog:
    live = LiveCatalog(path, _build, metrics, **kw)
    await live.load()
    return live


@pytest.mark.timeout(5)
async def test_reload_swaps_and_retires_changed_providers_after_their_calls(
    catalog_file: Path, catalog_text: str, metrics: RouterMetrics, registry: CollectorRegistry
) -> None:
    live = await _live(catalog_file, metrics)
    old = live.table
    assert not await live.reload_if_changed()  # unchanged file

    async with live.lease() as leased:
        _rewrite(catalog_file, catalog_text.replace("backup.test", "backup2.test") + "\n")
        assert await live.reload_if_changed()
        new = live.table
        assert leased is old and new is not old
        assert new.adapters["primary"] is old.adapters["primary"]
        retired = old.adapters["backup"]
        assert isinstance(retired, Recorded)
        await asyncio.sleep(0.05)
        assert not retired.closed.is_set()  # a call still holds the old table

    await asyncio.wait_for(retired.closed.wait(), 2)
    assert not new.adapters["primary"].closed.is_set()  # type: ignore[attr-defined]
    assert (
        registry.get_sample_value("switchyard_router_catalog_reloads_total", {"result": "ok"}) == 1
    )
    await live.aclose()
    assert all(a.closed.is_set() for a in new.adapters.values())  # type: ignore[attr-defined]


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "broken",
    [
        "version: 1\nproviders: {}\nmodels:\n  m:\n    deployments: [{provider: nope, model: x}]\n",
        "version: [unclosed\n",
        "version: 2\n",
    ],
)
async def test_broken_file_keeps_the_old_catalog(
    catalog_file: Path,
    metrics: RouterMetrics,
    registry: CollectorRegistry,
    broken: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = await _live(catalog_file, metrics)
    before = live.table
    _rewrite(catalog_file, broken)
    assert not await live.reload_if_changed()
    assert live.table is before
    assert (
        registry.get_sample_value("switchyard_router_catalog_reloads_total", {"result": "error"})
        == 1
    )
    assert "catalog not reloaded" in caplog.text and str(catalog_file) in caplog.text
    assert not await live.reload_if_changed()  # reported once, not on every poll
    await live.aclose()


@pytest.mark.timeout(5)
async def test_unsupported_kind_keeps_the_old_catalog(
    catalog_file: Path, catalog_text: str, metrics: RouterMetrics
) -> None:
    live = await _live(catalog_file, metrics)
    before = live.table
    _rewrite(catalog_file, catalog_text.replace("kind: openai", "kind: gemini", 1))
    assert not await live.reload_if_changed()
    assert live.table is before
    await live.aclose()


@pytest.mark.timeout(5)
async def test_startup_refuses_a_broken_file(tmp_path: Path, metrics: RouterMetrics) -> None:
    with pytest.raises(CatalogError):
        await LiveCatalog(tmp_path / "missing.yaml", _build, metrics).load()


@pytest.mark.timeout(5)
async def test_grace_bounds_the_wait_for_old_calls(
    catalog_file: Path, catalog_text: str, metrics: RouterMetrics
) -> None:
    live = await _live(catalog_file, metrics, retire_grace_s=0.05)
    async with live.lease() as old:
        _rewrite(catalog_file, catalog_text.replace("primary.test", "primary2.test"))
        assert await live.reload_if_changed()
        retired = old.adapters["primary"]
        await asyncio.wait_for(retired.closed.wait(), 2)  # type: ignore[attr-defined]
    await live.aclose()


@pytest.mark.timeout(5)
async def test_watcher_picks_up_a_change(
    catalog_file: Path, catalog_text: str, metrics: RouterMetrics
) -> None:
    live = await _live(catalog_file, metrics, poll_s=0.01)
    live.start()
    _rewrite(catalog_file, catalog_text.replace("chat-alias", "another-alias"))
    deadline = time.monotonic() + 2
    while "another-alias" not in live.table.catalog.models["chat-model"].aliases:
        assert time.monotonic() < deadline, "the watcher did not reload"
        await asyncio.sleep(0.01)
    await live.aclose()
