"""Switchyard edge: the public OpenAI-compatible HTTP service.

``create_app(settings)`` is the composition root (see ``edge.main``);
``python -m edge`` runs it (see ``edge.__main__``).
"""

from .config import EdgeSettings
from .main import create_app

__all__ = ["EdgeSettings", "create_app"]
