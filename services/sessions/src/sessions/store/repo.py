"""Repository functions over sessions' tables: keyword-only, explicit session, commit on write.

Stored responses are always addressed by ``(id, project_id)``: a row of
another project is never read, returned or deleted, and an expired row is
treated as gone (``purge_expired`` removes it later).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.responses_store import StoredResponseRecord

from .models import StoredResponse

__all__ = ["delete_response", "get_response", "purge_expired", "put_response"]


def _now() -> datetime:
    return datetime.now(UTC)


async def put_response(*, session: AsyncSession, record: StoredResponseRecord, ttl_s: int) -> bool:
    """Store ``record`` until ``created_at + ttl_s``; committed when this returns True.

    Idempotent: storing the same id again for the same project is a no-op that
    returns True. False means the id is taken by another project (nothing written).
    """
    created = datetime.fromtimestamp(record.created_at, UTC)
    session.add(
        StoredResponse(
            id=record.id,
            project_id=record.project_id,
            previous_response_id=record.previous_response_id,
            model=record.model,
            input_items=record.input_items,
            output=record.response.get("output", []),
            response=record.response,
            created_at=created,
            expires_at=created + timedelta(seconds=ttl_s),
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = await session.get(StoredResponse, record.id)
        return existing is not None and existing.project_id == record.project_id
    return True


async def get_response(
    *, session: AsyncSession, project_id: str, response_id: str, now: datetime | None = None
) -> StoredResponse | None:
    """The live response ``response_id`` of ``project_id``; None if unknown, foreign or expired."""
    result = await session.exec(
        select(StoredResponse).where(
            col(StoredResponse.id) == response_id,
            col(StoredResponse.project_id) == project_id,
            col(StoredResponse.expires_at) > (now or _now()),
        )
    )
    return result.first()


async def delete_response(*, session: AsyncSession, project_id: str, response_id: str) -> bool:
    """Delete the live response ``response_id`` of ``project_id``; False if there was none."""
    result = await session.exec(
        delete(StoredResponse).where(
            col(StoredResponse.id) == response_id,
            col(StoredResponse.project_id) == project_id,
            col(StoredResponse.expires_at) > _now(),
        )
    )
    await session.commit()
    return bool(result.rowcount)


async def purge_expired(*, session: AsyncSession, now: datetime | None = None) -> int:
    """Delete every expired stored response; returns how many."""
    result = await session.exec(
        delete(StoredResponse).where(col(StoredResponse.expires_at) <= (now or _now()))
    )
    await session.commit()
    return int(result.rowcount or 0)
