"""Keeps an ``EndpointCache`` equal to ``projects`` and ``endpoints`` (a ``TableSync``).

Subjects ``endpoints.changed.v1`` (admin endpoint writes) and
``projects.changed.v1`` (a project created or deleted: its type is part of
the cache); ``{"project_id": "<id>"}`` on either reloads that project (two
indexed queries), anything else everything. The admin routes also patch
their own edge's cache at once (``refresh``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from types import MappingProxyType

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .endpoints import EndpointCache, EndpointView, ProjectEndpoints
from .store import Endpoint, Project, endpoints_repo, repo
from .tablesync import TableSync

__all__ = ["EndpointSync", "refresh", "view_of"]

log = logging.getLogger(__name__)


def view_of(row: Endpoint) -> EndpointView:
    """The cache entry of an ``endpoints`` row."""
    return EndpointView(
        endpoint_id=row.id,
        slug=row.slug,
        model=row.model,
        system_prompt=row.system_prompt,
        params=MappingProxyType(dict(row.params or {})),
        streaming_enabled=row.streaming_enabled,
        active=row.active,
    )


def _project(project: Project, rows: Iterable[Endpoint]) -> ProjectEndpoints:
    return ProjectEndpoints(
        project.type, MappingProxyType({row.slug: view_of(row) for row in rows})
    )


async def refresh(cache: EndpointCache, session: AsyncSession, project_id: str) -> None:
    """Re-read one project's type and endpoints into ``cache`` (dropped if the project is gone)."""
    project = await repo.get_project(session=session, project_id=project_id)
    if project is None:
        cache.remove(project_id)
        return
    rows = await endpoints_repo.list_endpoints(session=session, project_id=project_id)
    cache.put(project_id, _project(project, rows))


class EndpointSync(TableSync):
    """See the module docstring and ``tablesync``."""

    name = "endpoint-sync"
    subjects = (subjects.ENDPOINTS_CHANGED, subjects.PROJECTS_CHANGED)
    id_field = "project_id"

    def __init__(
        self,
        cache: EndpointCache,
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        super().__init__(nc, interval_s=interval_s)
        self._cache = cache
        self._sessions = sessions

    async def reload(self) -> None:
        """Replace the cache with every project's type and endpoints."""
        async with self._sessions() as session:
            projects = await repo.list_projects(session=session)
            rows = await endpoints_repo.list_endpoints(session=session)
        by_project: defaultdict[str, list[Endpoint]] = defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row)
        self._cache.replace({p.id: _project(p, by_project[p.id]) for p in projects})
        log.debug("endpoint cache reloaded: %d endpoints", len(rows))

    async def reload_ids(self, ids: set[str]) -> None:
        """Refresh the projects ``ids``."""
        async with self._sessions() as session:
            for project_id in ids:
                await refresh(self._cache, session, project_id)
