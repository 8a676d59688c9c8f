"""LiteLLM proxy, installed into its own virtualenv and run as its docs recommend for production.

Install (``ensure_litellm``): ``uv venv bench/.work/litellm-venv`` then ``uv pip
install -r bench/litellm/requirements.txt --override bench/litellm/overrides.txt``
(the override pins certifi: LiteLLM 1.104+ asks for a certifi newer than the
package index holds). A stamp file holding both files' text skips the install
when nothing changed.

Run (``LiteLLM``): ``litellm --config <rendered bench/litellm/config.yaml>
--num_workers <cores>`` on a free loopback port: uvicorn with one worker process
per core (LiteLLM's recommendation), a master key, no database, telemetry off
(``LITELLM_TELEMETRY=False``), the bundled cost map instead of a remote fetch
(``LITELLM_LOCAL_MODEL_COST_MAP=True``), production mode and error-level logs.
Its process tree is the CLI process and the uvicorn workers it spawns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from devtools.ports import free_port
from devtools.procs import Child

from .layout import BenchLayout, render
from .target import TargetError, wait_until_ok

__all__ = ["LiteLLM", "ensure_litellm", "litellm_version"]

_STOP_GRACE_S = 15.0
#: Two workers import LiteLLM (several seconds each) on shared cores.
_READY_TIMEOUT_S = 240.0
_INSTALL_TIMEOUT_S = 900.0


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else "uv"


def ensure_litellm(layout: BenchLayout) -> Path:
    """The LiteLLM virtualenv, installed or updated as ``bench/litellm/`` says; its path."""
    venv = layout.work / "litellm-venv"
    requirements = layout.input("litellm/requirements.txt")
    overrides = layout.input("litellm/overrides.txt")
    wanted = requirements.read_text() + overrides.read_text()
    stamp = venv / ".bench-installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv
    steps = [
        [_uv(), "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
        [
            *(_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")),
            *("-r", str(requirements), "--override", str(overrides)),
        ],
    ]
    for argv in steps:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise TargetError(f"installing LiteLLM failed: {' '.join(argv)}\n{done.stderr}")
    stamp.write_text(wanted)
    return venv


def litellm_version(venv: Path) -> str:
    """The installed LiteLLM version, as its package metadata says."""
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


class LiteLLM:
    """LiteLLM proxy in front of ``upstream_url``, on a free loopback port."""

    name = "litellm"

    def __init__(
        self, layout: BenchLayout, *, venv: Path, upstream_url: str, api_key: str, workers: int
    ) -> None:
        self._layout = layout
        self._venv = venv
        self._upstream = upstream_url
        self._api_key = api_key
        self._workers = workers
        self.port = free_port()
        self._child: Child | None = None

    def url(self, *, stream: bool) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def model(self, *, stream: bool) -> str:
        return "bench-stream" if stream else "bench-chat"

    def process_roots(self) -> dict[str, int]:
        if self._child is None:
            raise TargetError("LiteLLM is not running")
        return {"litellm": self._child.pid}

    def __enter__(self) -> LiteLLM:
        work = self._layout.scratch("litellm")
        config = work / "config.yaml"
        config.write_text(
            render(
                self._layout.input("litellm/config.yaml").read_text(),
                {"UPSTREAM": self._upstream, "MASTER_KEY": self._api_key},
            )
        )
        argv = [
            str(self._venv / "bin" / "litellm"),
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)),
            *("--num_workers", str(self._workers)),
        ]
        self._child = Child(
            "litellm", argv, env=self._env(), cwd=work, log_path=work / "litellm.log"
        )
        try:
            wait_until_ok(
                f"http://127.0.0.1:{self.port}/health/liveliness",
                self._child,
                timeout_s=_READY_TIMEOUT_S,
                what="LiteLLM",
            )
        except BaseException:
            self._child.stop(_STOP_GRACE_S)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._child is not None:
            self._child.stop(_STOP_GRACE_S)

    def _env(self) -> dict[str, str]:
        # Only what a clean deployment would have: no DATABASE_URL, no provider keys.
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env |= {
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MODE": "PRODUCTION",
            "LITELLM_LOG": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }
        return env
