"""Importing the edge does nothing: no env reads that matter, no files, no sockets, no app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import importlib, pkgutil, edge
for info in pkgutil.walk_packages(edge.__path__, "edge."):
    importlib.import_module(info.name)
"""


def test_import_every_module_in_an_empty_environment(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", CODE], cwd=tmp_path, env={}, check=True, timeout=60)
    assert list(tmp_path.iterdir()) == []  # e.g. no .data/edge.db created
