"""Keeps a ``ProjectCache`` equal to ``projects`` and ``provider_credentials`` (a ``TableSync``).

Subjects ``credentials.changed.v1`` and ``projects.changed.v1``;
``{"project_id": "<id>"}`` on either reloads that project (two indexed
queries), anything else everything. The admin routes also patch their own
edge's cache at once (``refresh``); the echo of their own message then
re-reads it in order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .credentials import SealedCredential
from .projects import ProjectCache, ProjectView, SealedProviderKey
from .store import ProviderCredential, credentials_repo, repo
from .tablesync import TableSync

__all__ = ["ProjectSync", "refresh"]

log = logging.getLogger(__name__)


def _sealed(rows: Iterable[ProviderCredential]) -> list[SealedProviderKey]:
    return [
        SealedProviderKey(
            row.id, row.provider, SealedCredential(row.key_id, row.ciphertext), row.base_url
        )
        for row in rows
    ]


async def refresh(cache: ProjectCache, session: AsyncSession, project_id: str) -> None:
    """Re-read one project into ``cache`` (dropped if it no longer exists)."""
    project = await repo.get_project(session=session, project_id=project_id)
    if project is None:
        cache.remove(project_id)
        return
    rows = await credentials_repo.list_credentials(session=session, project_id=project_id)
    cache.put(project_id, ProjectView.build(project.settings or {}, _sealed(rows)))


class ProjectSync(TableSync):
    """See the module docstring and ``tablesync``."""

    name = "project-sync"
    subjects = (subjects.CREDENTIALS_CHANGED, subjects.PROJECTS_CHANGED)
    id_field = "project_id"

    def __init__(
        self,
        cache: ProjectCache,
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        super().__init__(nc, interval_s=interval_s)
        self._cache = cache
        self._sessions = sessions

    async def reload(self) -> None:
        """Replace the cache with every project's current settings and credentials."""
        async with self._sessions() as session:
            projects = await repo.list_projects(session=session)
            rows = await credentials_repo.list_credentials(session=session)
        by_project: defaultdict[str, list[ProviderCredential]] = defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row)
        self._cache.replace(
            {p.id: ProjectView.build(p.settings or {}, _sealed(by_project[p.id])) for p in projects}
        )
        log.debug("project cache reloaded: %d projects", len(projects))

    async def reload_ids(self, ids: set[str]) -> None:
        """Refresh the views of the projects ``ids``."""
        async with self._sessions() as session:
            for project_id in ids:
                await refresh(self._cache, session, project_id)
