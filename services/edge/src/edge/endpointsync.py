"""Keeps an ``EndpointCache`` equal to ``projects`` and ``endpoints`` (a ``TableSync``).

Subjects ``endpoints.changed.v1`` (admin endpoint writes) and
``projects.changed.v1`` (a project created or deleted: its type is part of
the cache); ``{"project_id": "<id>"}`` on either reloads that project (two
indexed queries), anything else everything. The admin routes also patch
their own edge's cache at once (``EndpointSync.refresh``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .endpoints import EndpointView, ProjectEndpoints
from .pipeline.guardrails import compile_guardrails
from .pipeline.ratelimit import RateLimits
from .store import Endpoint, Project, endpoints_repo
from .tablesync import ProjectTableSync

__all__ = ["EndpointSync", "view_of"]


def view_of(row: Endpoint) -> EndpointView:
    """The cache entry of an ``endpoints`` row, its guardrails and schemas compiled.

    A row was checked when it was saved, so compiling it again does not fail; if it
    does all the same (a row written by hand), ``InvalidRequest`` names the field.
    The schema module (jsonschema, about 14 MiB resident) is imported only when a
    row has a schema, so an edge without schema endpoints never loads it.
    """
    from .pipeline.schemas import compile_schema

    return EndpointView(
        endpoint_id=row.id,
        slug=row.slug,
        model=row.model,
        system_prompt=row.system_prompt,
        params=MappingProxyType(dict(row.params or {})),
        streaming_enabled=row.streaming_enabled,
        active=row.active,
        prompt_template=row.prompt_template,
        input_schema=None
        if row.input_schema is None
        else compile_schema(row.input_schema, "input_schema"),
        output_schema=None
        if row.output_schema is None
        else compile_schema(row.output_schema, "output_schema"),
        guardrails=compile_guardrails(row.guardrails or None),
        max_request_tokens=row.max_request_tokens,
        monthly_budget=row.monthly_budget,
        rate_limits=RateLimits.model_validate(row.rate_limits) if row.rate_limits else None,
        fallbacks=tuple(row.fallbacks or ()),
        sessions_enabled=row.sessions_enabled,
        session_ttl_seconds=row.session_ttl_seconds,
    )


class EndpointSync(ProjectTableSync[Endpoint, ProjectEndpoints]):
    """See the module docstring and ``tablesync``."""

    name = "endpoint-sync"
    subjects = (subjects.ENDPOINTS_CHANGED, subjects.PROJECTS_CHANGED)

    @staticmethod
    async def rows(session: AsyncSession, project_id: str | None) -> Sequence[Endpoint]:
        return await endpoints_repo.list_endpoints(session=session, project_id=project_id)

    @staticmethod
    def view(project: Project, rows: Sequence[Endpoint]) -> ProjectEndpoints:
        return ProjectEndpoints(
            project.type, MappingProxyType({row.slug: view_of(row) for row in rows})
        )
