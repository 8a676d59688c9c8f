"""What the figures were measured on: hardware, kernel, versions, date."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from .layout import REPO_ROOT

__all__ = ["describe_machine"]

#: Switchyard's runtime libraries whose versions shape its figures.
_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "grpcio",
    "nats-py",
    "httpx",
    "orjson",
    "pydantic",
    "sqlalchemy",
    "aiosqlite",
)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "not installed"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def _proc_value(path: str, key: str) -> str:
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return "?"


def _revision() -> str:
    rev = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout.strip()  # fmt: skip
    return f"{rev}{' with uncommitted changes' if dirty else ''}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def describe_machine(
    *, litellm_version: str | None, load_before: tuple[float, float, float]
) -> list[str]:
    """One line per fact, for the report's machine section (``load_before``: ``os.getloadavg()``
    when the run began, a hint of what else the shared cores were doing)."""
    memory_kib = int(_proc_value("/proc/meminfo", "MemTotal").split()[0])
    load = ", ".join(f"{x:.2f}" for x in load_before)
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"CPU: {_proc_value('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores",
        f"memory: {memory_kib / (1 << 20):.1f} GiB",
        f"kernel: {platform.system()} {platform.release()}",
        f"load average before the run: {load}",
        f"Python: {platform.python_version()} ({platform.python_implementation()})",
        f"Switchyard: {_revision()}; " + ", ".join(f"{p} {_version(p)}" for p in _PACKAGES),
        f"LiteLLM: {litellm_version or 'not run'}",
        f"nginx: {_first_line(['nginx', '-v'])}",
        f"wrk: {_first_line(['wrk', '--version'])}",
    ]
