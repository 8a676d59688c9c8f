from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import router
from router.config import RouterSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)
    settings = RouterSettings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 50051, 0)
    assert settings.catalog_path == Path("config/catalog.yaml")
    assert (settings.service_name, settings.catalog_poll_s) == ("router", 2.0)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_PORT", "6000")
    monkeypatch.setenv("ROUTER_METRICS_PORT", "9101")
    monkeypatch.setenv("ROUTER_CATALOG_PATH", "/etc/switchyard/catalog.yaml")
    monkeypatch.setenv("NATS_URL", "10.0.0.1:4222")
    settings = RouterSettings()
    assert (settings.port, settings.metrics_port) == (6000, 9101)
    assert settings.catalog_path == Path("/etc/switchyard/catalog.yaml")
    assert settings.nats_url == "nats://10.0.0.1:4222"


def test_every_field_is_described() -> None:
    assert all(field.description for field in RouterSettings.model_fields.values())


def test_modules_import_with_an_empty_environment() -> None:
    names = [m.name for m in pkgutil.walk_packages(router.__path__, "router.")]
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    subprocess.run([sys.executable, "-c", code, *names], env={}, check=True, timeout=60)
    assert "router.main" in names and "router.providers.openai_compat" in names
    importlib.import_module("router.__main__")
