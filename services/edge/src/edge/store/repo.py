"""Repository functions over the edge tables: keyword-only, explicit session, commit on write.

Callers own the session (``async with sessionmaker() as session``); every
function that writes commits before returning.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import PREFIX_LEN, ApiKey, ApiKeyCreate, Project, ProviderCredential

__all__ = [
    "UNSET",
    "DuplicateName",
    "Unset",
    "create_api_key",
    "create_project",
    "delete_api_key",
    "delete_project",
    "ensure_project",
    "get_api_key",
    "get_api_key_by_hash",
    "get_api_keys",
    "get_project",
    "get_project_by_name",
    "list_api_keys",
    "list_projects",
    "revoke_api_key",
    "touch_api_keys",
    "update_api_key",
    "update_project",
    "upsert_api_key",
]


class _Unset(Enum):
    UNSET = "unset"


#: An argument left out, as distinct from None (which sets the column to null).
UNSET: Final = _Unset.UNSET
#: The type of ``UNSET``.
Unset = Literal[_Unset.UNSET]


class DuplicateName(ValueError):
    """A project with that name already exists."""


async def create_project(
    *,
    session: AsyncSession,
    name: str,
    type: str,
    settings: dict[str, Any],
    rate_limits: dict[str, Any] | None = None,
) -> Project:
    """A new project; ``DuplicateName`` when the name is taken."""
    project = Project(name=name, type=type, settings=settings, rate_limits=rate_limits)
    session.add(project)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise DuplicateName(name) from None
    return project


async def get_project(*, session: AsyncSession, project_id: str) -> Project | None:
    """The project with id ``project_id``, if any."""
    return await session.get(Project, project_id)


async def list_projects(*, session: AsyncSession, only: str | None = None) -> Sequence[Project]:
    """Every project by creation time, or just project ``only`` when given."""
    query = select(Project).order_by(col(Project.created_at))
    if only is not None:
        query = query.where(Project.id == only)
    return (await session.exec(query)).all()


async def update_project(
    *,
    session: AsyncSession,
    project: Project,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
    rate_limits: dict[str, Any] | Literal[_Unset.UNSET] | None = UNSET,
) -> Project:
    """Rename ``project`` and/or replace its settings and ``rate_limits`` (None: no limits;
    ``UNSET``: unchanged); ``DuplicateName`` when the name is taken."""
    if name is not None:
        project.name = name
    if settings is not None:
        project.settings = settings
    if rate_limits is not UNSET:
        project.rate_limits = rate_limits
    session.add(project)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise DuplicateName(name or project.name) from None
    return project


async def delete_project(*, session: AsyncSession, project: Project) -> None:
    """Delete ``project`` with its keys and credentials.

    The children are deleted explicitly rather than left to ``ON DELETE
    CASCADE``, so the result does not depend on SQLite's foreign-key pragma.
    """
    for table in (ApiKey, ProviderCredential):
        await session.exec(delete(table).where(col(table.project_id) == project.id))
    await session.delete(project)
    await session.commit()


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


async def list_api_keys(
    *, session: AsyncSession, project_id: str | None = None
) -> Sequence[ApiKey]:
    """Every key (of ``project_id`` when given), revoked and expired ones included."""
    query = select(ApiKey).order_by(col(ApiKey.created_at))
    if project_id is not None:
        query = query.where(ApiKey.project_id == project_id)
    return (await session.exec(query)).all()


async def get_api_keys(*, session: AsyncSession, key_ids: Collection[str]) -> Sequence[ApiKey]:
    """The keys among ``key_ids`` that exist (the targeted reload of ``keysync``)."""
    if not key_ids:
        return []
    return (await session.exec(select(ApiKey).where(col(ApiKey.id).in_(key_ids)))).all()


async def get_api_key(*, session: AsyncSession, project_id: str, key_id: str) -> ApiKey | None:
    """Key ``key_id`` if it belongs to ``project_id`` (another project's key is "not found")."""
    row = await session.get(ApiKey, key_id)
    return row if row is not None and row.project_id == project_id else None


async def revoke_api_key(*, session: AsyncSession, key: ApiKey) -> ApiKey:
    """Mark ``key`` revoked now (idempotent: a revoked key keeps its first revocation time)."""
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        session.add(key)
        await session.commit()
    return key


async def update_api_key(
    *, session: AsyncSession, key: ApiKey, changes: Mapping[str, Any]
) -> ApiKey:
    """Set ``changes`` (``name``, ``description``, ``rate_limits``, ``allowed_models``; any
    other name is a programming error) on ``key``."""
    allowed = {"name", "description", "rate_limits", "allowed_models"}
    if not set(changes) <= allowed:
        raise ValueError(f"cannot update {sorted(set(changes) - allowed)} of a key")
    for name, value in changes.items():
        setattr(key, name, value)
    session.add(key)
    await session.commit()
    return key


async def delete_api_key(*, session: AsyncSession, key: ApiKey) -> None:
    """Delete ``key``."""
    await session.delete(key)
    await session.commit()


async def touch_api_keys(*, session: AsyncSession, last_used: Mapping[str, datetime]) -> None:
    """Record ``last_used_at`` for each key id (a batch, written by the periodic key sync)."""
    for key_id, used_at in last_used.items():
        await session.exec(
            update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=used_at)
        )
    await session.commit()
