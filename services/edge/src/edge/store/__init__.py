"""Edge persistence: the ``projects`` and ``api_keys`` tables and their repository functions."""

from pathlib import Path

from . import repo
from .models import ApiKey, ApiKeyCreate, ApiKeyPublic, Project, ProjectPublic

__all__ = [
    "ApiKey",
    "ApiKeyCreate",
    "ApiKeyPublic",
    "Project",
    "ProjectPublic",
    "migrations_dir",
    "repo",
]


def migrations_dir() -> Path:
    """The edge's Alembic directory (``services/edge/migrations``)."""
    return Path(__file__).resolve().parents[3] / "migrations"
