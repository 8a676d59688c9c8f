"""Rag's composition root: ``run(settings, stop)`` and the process entry point.

For now the service owns its tables and answers ``health.rag``; ingest and
retrieval handlers arrive with the rag issue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway_common import runtime

from .config import RagSettings

__all__ = ["MIGRATIONS_DIR", "main", "run"]

#: services/rag/migrations (the package lives in services/rag/src/rag).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


async def run(settings: RagSettings, stop: asyncio.Event) -> None:
    """Serve health until ``stop`` is set."""
    async with runtime.open_runtime(settings, service="rag", migrations_dir=MIGRATIONS_DIR):
        await stop.wait()


def main(argv: Sequence[str]) -> int:
    """``python -m rag [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="rag",
        settings_factory=RagSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
