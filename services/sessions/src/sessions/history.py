"""NATS request/reply handlers of conversation history (seed 001's Gateway API sessions).

    HISTORY_OPEN    start a session, or resume one: ``ok`` + its turns; ``expired``
                    + a fresh session; ``not_found``
    HISTORY_APPEND  store turns once per request id; ``ok`` only after the commit
    HISTORY_GET     ``ok`` + turns, ``expired``, ``not_found``

The contract is ``gateway_common.sessions_history``'s; the life cycle of a
session is ``sessions.store.history``'s. A request that does not parse is
``invalid`` (naming the fields, never their values); a database failure is
``error``. A reply with more turns than fit in one NATS message leaves out
the oldest (``truncated``), so a session never becomes unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from nats.aio.client import Client
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects
from gateway_common.sessions_history import (
    AppendReply,
    AppendTurns,
    HistoryKey,
    HistoryReply,
    HistoryStatus,
    OpenHistory,
    StoredTurn,
)

from .metrics import SessionsMetrics
from .responder import Operation, Reply, Responder
from .store import history
from .store.models import SessionTurn

__all__ = ["HistoryResponder", "fit_reply"]

#: Room left in a reply for the echoed request headers and the protocol line.
_REPLY_MARGIN_BYTES = 4096


def _unix(moment: datetime) -> int:
    return int(history.as_utc(moment).timestamp())


def _stored(turn: SessionTurn) -> StoredTurn:
    return StoredTurn(
        role=turn.role, content=turn.content, seq=turn.seq, created_at=_unix(turn.created_at)
    )


def fit_reply(reply: HistoryReply, max_bytes: int) -> HistoryReply:
    """``reply`` with its oldest turns left out until it serializes to at most ``max_bytes``."""
    if len(reply.to_bytes()) <= max_bytes:
        return reply
    room = max_bytes - len(reply.model_copy(update={"turns": [], "truncated": True}).to_bytes())
    kept: list[StoredTurn] = []
    for turn in reversed(reply.turns):
        room -= len(turn.to_bytes()) + 1  # the comma between list items
        if room < 0:
            break
        kept.append(turn)
    return reply.model_copy(update={"turns": kept[::-1], "truncated": True})


def _refusal(subject: str, status: HistoryStatus, message: str) -> Reply:
    if subject == subjects.HISTORY_APPEND:
        return AppendReply(status=status, message=message)
    return HistoryReply(status=status, message=message)


class HistoryResponder(Responder):
    """Serves the history subjects over one sessionmaker (see module docstring)."""

    label = "session history"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        default_ttl_s: int,
        max_in_flight: int = 64,
        metrics: SessionsMetrics | None = None,
    ) -> None:
        super().__init__(max_in_flight=max_in_flight, metrics=metrics)
        self._sessions = sessions
        self._default_ttl_s = default_ttl_s
        self._max_reply_bytes = 1024 * 1024 - _REPLY_MARGIN_BYTES

    async def start(self, nc: Client) -> None:
        """Subscribe; replies are kept under the server's ``max_payload``."""
        self._max_reply_bytes = nc.max_payload - _REPLY_MARGIN_BYTES
        await super().start(nc)

    def operations(self) -> Mapping[str, Operation]:
        """The three history subjects."""
        return {
            subjects.HISTORY_OPEN: self._open,
            subjects.HISTORY_APPEND: self._append,
            subjects.HISTORY_GET: self._get,
        }

    def failure(self, subject: str, message: str) -> Reply:
        """Status ``error`` in the subject's reply shape: the caller treats it like no answer."""
        return _refusal(subject, "error", message)

    def malformed(self, subject: str, exc: ValidationError) -> Reply:
        """Status ``invalid``, naming each bad field and its rule (not the value sent)."""
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        return _refusal(subject, "invalid", problems[:1000])

    def _history_reply(self, found: history.History) -> HistoryReply:
        row = found.session
        if row is None:
            return HistoryReply(status=found.status)
        reply = HistoryReply(
            status=found.status,
            session_id=row.id,
            created=found.created,
            turns=[_stored(turn) for turn in found.turns],
            expires_at=_unix(row.expires_at),
        )
        return fit_reply(reply, self._max_reply_bytes)

    async def _open(self, data: bytes) -> Reply:
        request = OpenHistory.model_validate_json(data)
        async with self._sessions() as session:
            found = await history.open_history(
                session=session,
                project_id=request.project_id,
                scope=request.scope,
                session_id=request.session_id,
                ttl_s=request.ttl_seconds or self._default_ttl_s,
                max_turns=request.max_turns,
                adopt=request.adopt,
                now=datetime.now(UTC),
            )
        return self._history_reply(found)

    async def _get(self, data: bytes) -> Reply:
        key = HistoryKey.model_validate_json(data)
        async with self._sessions() as session:
            found = await history.get_history(
                session=session,
                project_id=key.project_id,
                scope=key.scope,
                session_id=key.session_id,
                now=datetime.now(UTC),
            )
        return self._history_reply(found)

    async def _append(self, data: bytes) -> Reply:
        request = AppendTurns.model_validate_json(data)
        async with self._sessions() as session:
            result = await history.append_request(
                session=session, request=request, now=datetime.now(UTC)
            )
        if result.status == "ok" and not result.appended and self.metrics is not None:
            self.metrics.count_duplicate()
        return AppendReply(
            status=result.status,
            appended=result.appended,
            expires_at=None if result.expires_at is None else _unix(result.expires_at),
        )
