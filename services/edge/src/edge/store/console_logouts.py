"""``console_logouts``: the console sessions signed out before they expired, and their
repository functions.

A console session lives in its signed cookie (``edge.console``), so signing out cannot
delete it; every edge must refuse the cookie instead. A logout writes its session id
here with the cookie's expiry (``sid``, ``expires_at`` in Unix seconds), every edge
keeps the unexpired rows in memory (``edge.consolesync``), and rows past their expiry
are deleted by the next logout: the table holds at most the logouts of one session
lifetime (8 hours). Conventions of ``repo``: keyword-only, explicit session, commit on
write.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["ConsoleLogout", "add_logout", "get_logouts", "list_logouts"]


class ConsoleLogout(SQLModel, table=True):
    """One signed-out console session, kept until its cookie would have expired."""

    __tablename__ = "console_logouts"

    sid: str = Field(primary_key=True, max_length=64, description="The session's id.")
    expires_at: int = Field(index=True, description="The cookie's expiry, Unix seconds.")


async def add_logout(*, session: AsyncSession, sid: str, expires_at: int, now: int) -> None:
    """Record that ``sid`` signed out (idempotent), dropping the rows expired by ``now``."""
    await session.exec(delete(ConsoleLogout).where(col(ConsoleLogout.expires_at) <= now))
    await session.merge(ConsoleLogout(sid=sid, expires_at=expires_at))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()  # the same session signed out on another edge meanwhile


async def list_logouts(*, session: AsyncSession, now: int) -> Sequence[ConsoleLogout]:
    """Every logout whose session has not expired by ``now``."""
    query = select(ConsoleLogout).where(col(ConsoleLogout.expires_at) > now)
    return (await session.exec(query)).all()


async def get_logouts(*, session: AsyncSession, sids: Collection[str]) -> Sequence[ConsoleLogout]:
    """The logouts of the sessions ``sids`` (those that have one)."""
    query = select(ConsoleLogout).where(col(ConsoleLogout.sid).in_(list(sids)))
    return (await session.exec(query)).all()
