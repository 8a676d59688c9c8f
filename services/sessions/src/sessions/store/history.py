"""Repository functions over ``sessions`` and ``session_turns``: keyword-only, explicit session.

The life of a session (the wire contract is ``gateway_common.sessions_history``)::

    open(no id) --> live --append--> live (expires_at = now + ttl, turns added)
                     |  now >= expires_at
                     v
                  expired --reaper--> reaped (turns deleted; the row answers "expired")
                                        |  expires_at + tombstone_s passed
                                        v
                                      deleted (the id is unknown: "not_found")

A session is always addressed by (id, project_id, scope): any mismatch is
``not_found``, exactly like an id that never existed. ``now`` is passed in
(the handlers use the wall clock; tests pass their own).

Appends are serialized per session by their first statement, an ``UPDATE``
of the session row that also reserves the turns' ``seq`` numbers (a row lock
on PostgreSQL, the database write lock on SQLite). Under that lock the
request id is checked against the session's turns, so two appends with the
same request id, even at the same time, store the turns once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import exists, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.sessions_history import MAX_SESSION_TURNS, AppendTurns, Turn

from .models import HistorySession, SessionTurn

__all__ = [
    "AppendResult",
    "History",
    "ReapCounts",
    "append_request",
    "append_turns",
    "as_utc",
    "get_history",
    "open_history",
    "reap_history",
]

Found = Literal["ok", "expired", "not_found"]


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (SQLite hands timestamps back naive, in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class History:
    """A session and its kept turns (oldest first); ``session`` None when ``not_found``."""

    status: Found
    session: HistorySession | None = None
    turns: Sequence[SessionTurn] = ()
    created: bool = False


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did; ``expires_at`` is set when the session is live."""

    status: Found
    appended: bool = False
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReapCounts:
    """What one reaper pass did: turns deleted, sessions marked reaped, sessions deleted.

    ``full`` when a stage hit its batch size (run another pass soon).
    """

    turns: int = 0
    reaped: int = 0
    deleted: int = 0
    full: bool = False


def _parse_id(session_id: str) -> str | None:
    """The canonical form of a UUID string, None for anything that cannot be one of our ids."""
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        return None


async def _find(
    session: AsyncSession, *, project_id: str, scope: str, session_id: str
) -> HistorySession | None:
    canonical = _parse_id(session_id)
    if canonical is None:
        return None
    row = await session.get(HistorySession, canonical)
    if row is None or row.project_id != project_id or row.scope != scope:
        return None
    return row


def _live(row: HistorySession, now: datetime) -> bool:
    return not row.reaped and as_utc(row.expires_at) > now


async def _start(
    session: AsyncSession,
    *,
    project_id: str,
    scope: str,
    ttl_s: int,
    now: datetime,
    session_id: str | None = None,
) -> HistorySession:
    row = HistorySession(
        id=session_id or str(uuid.uuid4()),
        project_id=project_id,
        scope=scope,
        ttl_seconds=ttl_s,
        next_seq=0,
        reaped=False,
        created_at=now,
        last_active_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    await session.commit()
    return row


async def _adopt(
    session: AsyncSession, *, project_id: str, scope: str, ttl_s: int, now: datetime, canonical: str
) -> History | None:
    """Start a session under the caller's id; ``None`` when a concurrent open inserted it first
    (the unique primary key refuses the second insert, which is rolled back)."""
    try:
        row = await _start(
            session, project_id=project_id, scope=scope, ttl_s=ttl_s, now=now, session_id=canonical
        )
    except IntegrityError:
        await session.rollback()
        return None
    return History(status="ok", session=row, created=True)


async def _turns(
    session: AsyncSession, session_id: str, *, max_turns: int | None
) -> list[SessionTurn]:
    query = select(SessionTurn).where(col(SessionTurn.session_id) == session_id)
    if max_turns is None:
        result = await session.exec(query.order_by(col(SessionTurn.seq)))
        return list(result.all())
    result = await session.exec(query.order_by(col(SessionTurn.seq).desc()).limit(max_turns))
    return list(reversed(result.all()))


async def open_history(
    *,
    session: AsyncSession,
    project_id: str,
    scope: str,
    session_id: str | None,
    ttl_s: int,
    now: datetime,
    max_turns: int | None = None,
    adopt: bool = False,
) -> History:
    """Start a session (``session_id`` None), or read a live one's turns.

    An expired session is replaced by a new one (status ``expired``,
    ``created``); a new session is committed before this returns. Reading a
    live session writes nothing (only appends extend its life). With ``adopt``
    an unknown UUID ``session_id`` is started under that id, and an expired one
    restarts under the same id without its turns (an id of another project or
    scope stays ``not_found``).
    """
    if session_id is None:
        row = await _start(session, project_id=project_id, scope=scope, ttl_s=ttl_s, now=now)
        return History(status="ok", session=row, created=True)
    found = await _find(session, project_id=project_id, scope=scope, session_id=session_id)
    if adopt and (canonical := _parse_id(session_id)) is not None:
        if found is None:
            if await session.get(HistorySession, canonical) is None:
                started = await _adopt(
                    session,
                    project_id=project_id,
                    scope=scope,
                    ttl_s=ttl_s,
                    now=now,
                    canonical=canonical,
                )
                if started is not None:
                    return started
            # Taken: by another project or scope, or by a concurrent open of this very id
            # (a visitor's first two messages at once), whose session this call continues.
            found = await _find(session, project_id=project_id, scope=scope, session_id=session_id)
            if found is None:
                return History(status="not_found")
        if not _live(found, now):
            await session.exec(delete(SessionTurn).where(col(SessionTurn.session_id) == canonical))
            found.reaped = False
            found.ttl_seconds = ttl_s
            found.last_active_at = now
            found.expires_at = now + timedelta(seconds=ttl_s)
            found.created_at = now
            session.add(found)
            await session.commit()
            await session.refresh(found)
            return History(status="expired", session=found, created=True)
    if found is None:
        return History(status="not_found")
    if not _live(found, now):
        row = await _start(session, project_id=project_id, scope=scope, ttl_s=ttl_s, now=now)
        return History(status="expired", session=row, created=True)
    return History(
        status="ok", session=found, turns=await _turns(session, found.id, max_turns=max_turns)
    )


async def get_history(
    *, session: AsyncSession, project_id: str, scope: str, session_id: str, now: datetime
) -> History:
    """A live session's turns; ``expired`` or ``not_found`` (with no session) otherwise."""
    found = await _find(session, project_id=project_id, scope=scope, session_id=session_id)
    if found is None:
        return History(status="not_found")
    if not _live(found, now):
        return History(status="expired")
    return History(
        status="ok", session=found, turns=await _turns(session, found.id, max_turns=None)
    )


async def append_turns(
    *,
    session: AsyncSession,
    project_id: str,
    scope: str,
    session_id: str,
    request_id: str,
    turns: Sequence[Turn],
    ttl_s: int | None,
    now: datetime,
    max_turns: int = MAX_SESSION_TURNS,
) -> AppendResult:
    """Append ``turns`` to a live session once per ``request_id``; committed when this returns.

    Moves ``last_active_at`` to ``now`` and ``expires_at`` to ``now + ttl``
    (``ttl_s`` None: the session's own ``ttl_seconds``), then drops the oldest
    turns past ``max_turns``. A request id already among the session's turns
    stores nothing (``appended`` False, the session's life unchanged).
    """
    canonical = _parse_id(session_id)
    if canonical is None or not turns:
        return AppendResult(status="not_found" if canonical is None else "ok")
    values: dict[str, object] = {
        "next_seq": col(HistorySession.next_seq) + len(turns),
        "last_active_at": now,
    }
    if ttl_s is not None:
        values |= {"ttl_seconds": ttl_s, "expires_at": now + timedelta(seconds=ttl_s)}
    bumped = (
        await session.exec(
            update(HistorySession)
            .where(
                col(HistorySession.id) == canonical,
                col(HistorySession.project_id) == project_id,
                col(HistorySession.scope) == scope,
                col(HistorySession.reaped).is_(False),
                col(HistorySession.expires_at) > now,
            )
            .values(values)
            .returning(col(HistorySession.next_seq), col(HistorySession.ttl_seconds))
        )
    ).first()
    if bumped is None:
        await session.rollback()
        found = await _find(session, project_id=project_id, scope=scope, session_id=canonical)
        return AppendResult(status="not_found" if found is None else "expired")
    next_seq, ttl_seconds = int(bumped[0]), int(bumped[1])
    seen = await session.exec(
        select(
            exists().where(
                col(SessionTurn.session_id) == canonical, col(SessionTurn.request_id) == request_id
            )
        )
    )
    if seen.one():
        await session.rollback()
        row = await session.get(HistorySession, canonical)
        expires = as_utc(row.expires_at) if row is not None else None
        return AppendResult(status="ok", appended=False, expires_at=expires)
    expires_at = now + timedelta(seconds=ttl_seconds)
    if ttl_s is None:
        await session.exec(
            update(HistorySession)
            .where(col(HistorySession.id) == canonical)
            .values(expires_at=expires_at)
        )
    first = next_seq - len(turns)
    session.add_all(
        SessionTurn(
            session_id=canonical,
            seq=first + offset,
            request_id=request_id,
            role=turn.role,
            content=turn.content,
            created_at=now,
        )
        for offset, turn in enumerate(turns)
    )
    await session.flush()
    await session.exec(
        delete(SessionTurn).where(
            col(SessionTurn.session_id) == canonical, col(SessionTurn.seq) < next_seq - max_turns
        )
    )
    await session.commit()
    return AppendResult(status="ok", appended=True, expires_at=expires_at)


async def append_request(
    *, session: AsyncSession, request: AppendTurns, now: datetime
) -> AppendResult:
    """``append_turns`` of one append as the edge sends it (a request or a transcript event)."""
    return await append_turns(
        session=session,
        project_id=request.project_id,
        scope=request.scope,
        session_id=request.session_id,
        request_id=request.request_id,
        turns=request.turns,
        ttl_s=request.ttl_seconds,
        now=now,
    )


async def reap_history(
    *, session: AsyncSession, now: datetime, tombstone_s: float, batch: int = 1000
) -> ReapCounts:
    """One bounded pass of the expiry reaper, committed: at most ``batch`` rows per stage.

    1. delete turns of expired sessions not yet reaped;
    2. mark expired sessions with no turns left ``reaped`` (tombstones: no content);
    3. delete reaped sessions whose ``expires_at`` is more than ``tombstone_s`` ago.

    An expired session cannot gain turns (appends need a live one), so the
    stages make progress. ``full`` tells the caller a stage may have more to do.
    """
    expired = (
        col(HistorySession.reaped).is_(False),
        col(HistorySession.expires_at) <= now,
    )
    turn_ids = list(
        (
            await session.exec(
                select(col(SessionTurn.id))
                .join(HistorySession, col(HistorySession.id) == col(SessionTurn.session_id))
                .where(*expired)
                .limit(batch)
            )
        ).all()
    )
    if turn_ids:
        await session.exec(delete(SessionTurn).where(col(SessionTurn.id).in_(turn_ids)))
    emptied = list(
        (
            await session.exec(
                select(col(HistorySession.id))
                .where(
                    *expired,
                    ~exists().where(col(SessionTurn.session_id) == col(HistorySession.id)),
                )
                .limit(batch)
            )
        ).all()
    )
    if emptied:
        await session.exec(
            update(HistorySession).where(col(HistorySession.id).in_(emptied)).values(reaped=True)
        )
    cutoff = now - timedelta(seconds=tombstone_s)
    gone = list(
        (
            await session.exec(
                select(col(HistorySession.id))
                .where(
                    col(HistorySession.reaped).is_(True), col(HistorySession.expires_at) <= cutoff
                )
                .limit(batch)
            )
        ).all()
    )
    if gone:
        await session.exec(delete(SessionTurn).where(col(SessionTurn.session_id).in_(gone)))
        await session.exec(delete(HistorySession).where(col(HistorySession.id).in_(gone)))
    await session.commit()
    counts = (len(turn_ids), len(emptied), len(gone))
    return ReapCounts(*counts, full=batch in counts)
