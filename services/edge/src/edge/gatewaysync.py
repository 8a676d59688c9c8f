"""Keeps a ``GatewayCache`` equal to ``gateways`` (a ``ProjectTableSync``).

Subjects ``gateways.changed.v1`` (admin gateway writes) and
``projects.changed.v1`` (a project deleted takes its gateways with it);
``{"project_id": "<id>"}`` reloads that project, anything else everything. The
admin routes also patch their own edge's cache at once (``GatewaySync.refresh``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .gateways import GatewayView, ProjectGateways
from .store import Gateway, Project, gateways
from .tablesync import ProjectTableSync

__all__ = ["GatewaySync", "view_of"]


def view_of(row: Gateway) -> GatewayView:
    """The cache entry of a ``gateways`` row."""
    return GatewayView(
        gateway_id=row.id,
        project_id=row.project_id,
        name=row.name,
        model=row.model,
        instructions=row.instructions,
        credential_id=row.credential_id,
        params=MappingProxyType(dict(row.params or {})),
        collection_id=row.collection_id,
        top_k=row.top_k,
        min_score=row.min_score,
        overridable=frozenset(row.overridable or ()),
        routing=None if row.routing is None else MappingProxyType(dict(row.routing)),
        on_rag_failure=row.on_rag_failure,
    )


class GatewaySync(ProjectTableSync[Gateway, ProjectGateways]):
    """See the module docstring and ``tablesync``."""

    name = "gateway-sync"
    subjects = (subjects.GATEWAYS_CHANGED, subjects.PROJECTS_CHANGED)

    @staticmethod
    async def rows(session: AsyncSession, project_id: str | None) -> Sequence[Gateway]:
        return await gateways.list_gateways(session=session, project_id=project_id)

    @staticmethod
    def view(project: Project, rows: Sequence[Gateway]) -> ProjectGateways:
        return ProjectGateways.of([view_of(row) for row in rows])
