"""Switchyard edge: the public OpenAI-compatible HTTP service.

``create_app(settings)`` is the composition root (see ``edge.main``);
``python -m edge`` runs it (see ``edge.__main__``). ``create_app`` is imported
on first use, so ``python -m edge`` can defer nats-py's aiohttp import
(``gateway_common.lean``) before ``edge.main`` pulls in nats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import EdgeSettings

if TYPE_CHECKING:
    from .main import create_app

__all__ = ["EdgeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .main import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
