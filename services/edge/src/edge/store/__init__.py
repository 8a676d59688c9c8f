"""Edge persistence: ``projects``, ``api_keys``, ``provider_credentials``, ``endpoints`` and
their repositories.

``repo`` holds projects and keys; ``credentials_repo`` the sealed provider credentials;
``endpoints_repo`` the Gateway API endpoints; ``gateways`` seed 002's configured models;
``console_logouts`` the console sessions signed out before their expiry.
"""

from pathlib import Path

from . import console_logouts, credentials_repo, endpoints_repo, gateways, repo
from .console_logouts import ConsoleLogout
from .gateways import Gateway
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
    "ConsoleLogout",
    "Endpoint",
    "EndpointCreate",
    "EndpointPublic",
    "EndpointUpdate",
    "Gateway",
    "Project",
    "ProjectPublic",
    "ProjectType",
    "ProviderCredential",
    "ProviderCredentialPublic",
    "console_logouts",
    "credentials_repo",
    "endpoints_repo",
    "gateways",
    "migrations_dir",
    "repo",
]


def migrations_dir() -> Path:
    """The edge's Alembic directory (``services/edge/migrations``)."""
    return Path(__file__).resolve().parents[3] / "migrations"
