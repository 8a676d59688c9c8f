"""Repository functions over the edge tables: keyword-only, explicit session, commit on write.

Callers own the session (``async with sessionmaker() as session``); every
function that writes commits before returning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import PREFIX_LEN, ApiKey, ApiKeyCreate, Project

__all__ = [
    "create_api_key",
    "ensure_project",
    "get_api_key_by_hash",
    "get_project_by_name",
    "list_api_keys",
    "touch_api_keys",
    "upsert_api_key",
]


async def get_project_by_name(*, session: AsyncSession, name: str) -> Project | None:
    """The project called ``name``, if any."""
    result = await session.exec(select(Project).where(Project.name == name))
    return result.first()


async def ensure_project(*, session: AsyncSession, name: str) -> Project:
    """The project called ``name``, created if missing (safe against a concurrent creator)."""
    if (project := await get_project_by_name(session=session, name=name)) is not None:
        return project
    project = Project(name=name)
    session.add(project)
    try:
        await session.commit()
    except IntegrityError:
        # Someone else created it between our SELECT and INSERT: theirs wins.
        await session.rollback()
        existing = await get_project_by_name(session=session, name=name)
        if existing is None:
            raise
        return existing
    return project


async def get_api_key_by_hash(*, session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The key whose stored hash is ``key_hash``, if any."""
    result = await session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash))
    return result.first()


async def create_api_key(
    *, session: AsyncSession, project_id: str, data: ApiKeyCreate, key: str, key_hash: str
) -> ApiKey:
    """Store a new key for ``project_id``; only its hash and display prefix are kept."""
    row = ApiKey.model_validate(
        data, update={"project_id": project_id, "key_hash": key_hash, "prefix": key[:PREFIX_LEN]}
    )
    session.add(row)
    await session.commit()
    return row


async def upsert_api_key(
    *, session: AsyncSession, project_id: str, data: ApiKeyCreate, key: str, key_hash: str
) -> ApiKey:
    """Make the key with ``key_hash`` exist, belong to ``project_id`` and match ``data``.

    An existing row is re-pointed, re-scoped and un-revoked; a missing one is created.
    """
    row = await get_api_key_by_hash(session=session, key_hash=key_hash)
    if row is None:
        return await create_api_key(
            session=session, project_id=project_id, data=data, key=key, key_hash=key_hash
        )
    row.sqlmodel_update(data.model_dump(exclude_unset=False))
    row.project_id = project_id
    row.revoked_at = None
    session.add(row)
    await session.commit()
    return row


async def list_api_keys(*, session: AsyncSession) -> Sequence[ApiKey]:
    """Every key, revoked and expired ones included (the cache reports why they fail)."""
    result = await session.exec(select(ApiKey))
    return result.all()


async def touch_api_keys(*, session: AsyncSession, last_used: Mapping[str, datetime]) -> None:
    """Record ``last_used_at`` for each key id (a batch, written by the periodic key sync)."""
    for key_id, used_at in last_used.items():
        await session.exec(
            update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=used_at)
        )
    await session.commit()
