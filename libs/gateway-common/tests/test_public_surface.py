"""Pins the shared library's public surface and the no-import-side-effects rule."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import gateway_common
from gateway_common import catalog, errors, events, subjects

ROOT = Path(__file__).resolve().parents[3]


def test_exported_modules_are_pinned() -> None:
    assert sorted(gateway_common.__all__) == [
        "billing_api",
        "catalog",
        "db",
        "errors",
        "events",
        "grpc",
        "lean",
        "migrate_proc",
        "nats",
        "netguard",
        "openai",
        "pricing",
        "responses_store",
        "runtime",
        "sessions_history",
        "settings",
        "subjects",
        "telemetry",
        "testing",
    ]
    for name in gateway_common.__all__:
        importlib.import_module(f"gateway_common.{name}")


def test_every_module_declares_all() -> None:
    for info in pkgutil.iter_modules(gateway_common.__path__):
        module = importlib.import_module(f"gateway_common.{info.name}")
        assert hasattr(module, "__all__"), f"gateway_common.{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"gateway_common.{info.name}.{name} is not defined"


def test_error_taxonomy_names() -> None:
    assert set(errors.__all__) >= {
        "GatewayError",
        "InvalidRequest",
        "Unauthenticated",
        "PermissionDenied",
        "RateLimited",
        "ProviderError",
        "ProviderTimeout",
        "ProviderUnavailable",
        "ProviderRejected",
        "AllProvidersFailed",
    }
    assert subjects.USAGE_RECORDED == "usage.recorded.v1"
    assert events.UsageRecorded.model_fields["schema_version"].default == 1
    assert catalog.Catalog.model_config["extra"] == "forbid"


def _all_service_modules() -> list[str]:
    names: list[str] = []
    roots = [ROOT / "libs" / "gateway-common" / "src", ROOT / "devtools" / "src"]
    roots += sorted((ROOT / "services").glob("*/src"))
    for src in roots:
        for path in sorted(src.rglob("*.py")):
            rel = path.relative_to(src).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts and parts[-1] != "__main__":
                names.append(".".join(parts))
    return names


def test_importing_any_module_has_no_side_effects(tmp_path: Path) -> None:
    """Import every module with an empty environment in an empty directory.

    Nothing may read settings, open sockets or write files at import time: the
    directory must stay empty and no module may fail for want of configuration.
    """
    modules = _all_service_modules()
    assert len(modules) > 10
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
