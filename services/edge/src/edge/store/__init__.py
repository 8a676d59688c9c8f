"""Edge persistence: ``projects``, ``api_keys``, ``provider_credentials``, ``endpoints`` and
their repositories.

``repo`` holds projects and keys; ``credentials_repo`` the sealed provider credentials;
``endpoints_repo`` the Gateway API endpoints.
"""

from pathlib import Path

from . import credentials_repo, endpoints_repo, repo
from .models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyPublic,
    ChannelKey,
    Endpoint,
    EndpointCreate,
    EndpointPublic,
    EndpointUpdate,
    Project,
    ProjectPublic,
    ProjectType,
    ProviderCredential,
    ProviderCredentialPublic,
)

__all__ = [
    "ApiKey",
    "ApiKeyCreate",
    "ApiKeyPublic",
    "ChannelKey",
    "Endpoint",
    "EndpointCreate",
    "EndpointPublic",
    "EndpointUpdate",
    "Project",
    "ProjectPublic",
    "ProjectType",
    "ProviderCredential",
    "ProviderCredentialPublic",
    "credentials_repo",
    "endpoints_repo",
    "migrations_dir",
    "repo",
]


def migrations_dir() -> Path:
    """The edge's Alembic directory (``services/edge/migrations``)."""
    return Path(__file__).resolve().parents[3] / "migrations"
