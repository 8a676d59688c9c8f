"""Shared fixtures for the router's unit tests: a fresh metrics registry, a catalog file."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from router.metrics import RouterMetrics

CATALOG = """
version: 1
providers:
  primary:
    kind: openai
    base_url: https://primary.test/v1
  backup:
    kind: openai
    base_url: https://backup.test/v1
models:
  chat-model:
    aliases: [chat-alias]
    deployments:
      - {provider: primary, model: primary-chat}
      - {provider: backup, model: backup-chat}
    prices: {input: "0.00000015", output: "0.0000006"}
    context_window: 128000
    max_output_tokens: 16384
    speed_tps: 180
    best_for: "General purpose, reasoning"
    capabilities: [chat, tools, streaming]
  embed-model:
    deployments:
      - {provider: backup, model: backup-embed}
    prices: {input: "0.00000002"}
    capabilities: [embeddings]
"""


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> RouterMetrics:
    return RouterMetrics(registry)


@pytest.fixture
def catalog_text() -> str:
    """A catalog with a two-deployment chat model and an embeddings model."""
    return CATALOG


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return path
