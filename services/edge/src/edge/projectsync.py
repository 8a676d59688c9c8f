"""Keeps a ``ProjectCache`` equal to ``projects`` and ``provider_credentials`` (a ``TableSync``).

Subjects ``credentials.changed.v1`` and ``projects.changed.v1``;
``{"project_id": "<id>"}`` on either reloads that project (two indexed
queries), anything else everything. The admin routes also patch their own
edge's cache at once (``ProjectSync.refresh``); the echo of their own message then
re-reads it in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .credentials import SealedCredential
from .projects import ProjectView, SealedProviderKey
from .store import Project, ProviderCredential, credentials_repo
from .tablesync import ProjectTableSync

__all__ = ["ProjectSync"]


def _sealed(rows: Iterable[ProviderCredential]) -> list[SealedProviderKey]:
    return [
        SealedProviderKey(
            row.id, row.provider, SealedCredential(row.key_id, row.ciphertext), row.base_url
        )
        for row in rows
    ]


class ProjectSync(ProjectTableSync[ProviderCredential, ProjectView]):
    """See the module docstring and ``tablesync``."""

    name = "project-sync"
    subjects = (subjects.CREDENTIALS_CHANGED, subjects.PROJECTS_CHANGED)

    @staticmethod
    async def rows(session: AsyncSession, project_id: str | None) -> Sequence[ProviderCredential]:
        return await credentials_repo.list_credentials(session=session, project_id=project_id)

    @staticmethod
    def view(project: Project, rows: Sequence[ProviderCredential]) -> ProjectView:
        return ProjectView.build(project.settings or {}, _sealed(rows), project.rate_limits)
