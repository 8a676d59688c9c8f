"""Importing any billing module has no side effects: no env read needed, no files, no sockets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import pkgutil, billing
for module in pkgutil.walk_packages(billing.__path__, "billing."):
    if module.name != "billing.__main__":
        __import__(module.name)
"""


def test_every_module_imports_in_an_empty_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env={}, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert list(tmp_path.iterdir()) == []  # no data dir, no SQLite file, no logs
