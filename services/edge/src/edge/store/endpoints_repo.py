"""Repository functions over ``endpoints``: a project's Gateway API presets.

Same conventions as ``repo``: keyword-only, explicit session, commit on
write. A slug is unique per project; a write that would repeat one raises
``DuplicateSlug`` (the unique constraint decides, so concurrent creators
cannot both win).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import Endpoint, EndpointCreate, EndpointUpdate

__all__ = [
    "DuplicateSlug",
    "create_endpoint",
    "delete_endpoint",
    "get_endpoint",
    "list_endpoints",
    "update_endpoint",
]


class DuplicateSlug(ValueError):
    """The project already has an endpoint with that slug."""


async def _commit(session: AsyncSession, row: Endpoint) -> Endpoint:
    slug = row.slug  # the rollback below expires ``row``
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise DuplicateSlug(slug) from None
    return row


async def create_endpoint(
    *, session: AsyncSession, project_id: str, data: EndpointCreate
) -> Endpoint:
    """A new endpoint of ``project_id``; ``DuplicateSlug`` when the slug is taken."""
    row = Endpoint.model_validate(data, update={"project_id": project_id})
    return await _commit(session, row)


async def list_endpoints(
    *, session: AsyncSession, project_id: str | None = None
) -> Sequence[Endpoint]:
    """Every endpoint (of ``project_id`` when given), by slug; inactive ones included."""
    query = select(Endpoint).order_by(col(Endpoint.project_id), col(Endpoint.slug))
    if project_id is not None:
        query = query.where(Endpoint.project_id == project_id)
    return (await session.exec(query)).all()


async def get_endpoint(*, session: AsyncSession, project_id: str, slug: str) -> Endpoint | None:
    """The endpoint ``slug`` of ``project_id``, if any."""
    query = select(Endpoint).where(Endpoint.project_id == project_id, Endpoint.slug == slug)
    return (await session.exec(query)).first()


async def update_endpoint(
    *, session: AsyncSession, row: Endpoint, data: EndpointUpdate
) -> Endpoint:
    """Apply the fields ``data`` sets to ``row``; ``DuplicateSlug`` when renamed onto a taken slug."""
    row.sqlmodel_update(data.model_dump(exclude_unset=True))
    row.updated_at = datetime.now(UTC)
    return await _commit(session, row)


async def delete_endpoint(*, session: AsyncSession, row: Endpoint) -> None:
    """Delete ``row``."""
    await session.delete(row)
    await session.commit()
