"""Keeps a ``KeyCache`` equal to the ``api_keys`` table.

``KeySync`` is an async context manager built in the lifespan. On entry it
loads every key (the edge refuses to start without its keys), subscribes to
``keys.changed.v1`` and starts one background task. The task reloads:

- at once when a ``keys.changed.v1`` message arrives (a burst of messages
  coalesces into one reload), and
- every ``interval_s`` regardless, as a safety net for a missed message.

Each reload first writes the ``last_used_at`` times the cache collected since
the previous one (best effort: lost if that write fails), then replaces the
cache wholesale. A failed reload keeps serving the previous cache and is
retried at the next wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from types import TracebackType

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .auth import KeyCache, KeyEntry
from .store import ApiKey, repo

__all__ = ["KeySync"]

log = logging.getLogger(__name__)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; every timestamp we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _entry(row: ApiKey) -> KeyEntry:
    return KeyEntry(
        key_id=row.id,
        project_id=row.project_id,
        scopes=frozenset(row.scopes),
        expires_at=_utc(row.expires_at),
        revoked=row.revoked_at is not None,
    )


class KeySync:
    """See the module docstring."""

    def __init__(
        self,
        cache: KeyCache,
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        self._cache = cache
        self._sessions = sessions
        self._nc = nc
        self._interval = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None

    async def reload(self) -> None:
        """Flush last-use times, then replace the cache with the table's current keys."""
        used = self._cache.drain_last_used()
        async with self._sessions() as session:
            if used:
                await repo.touch_api_keys(session=session, last_used=used)
            rows = await repo.list_api_keys(session=session)
        self._cache.replace((row.key_hash, _entry(row)) for row in rows)
        log.debug("key cache reloaded: %d keys", len(rows))

    async def _on_changed(self, _: Msg) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.reload()
            except (SQLAlchemyError, OSError):
                log.warning("key cache reload failed; serving the previous keys", exc_info=True)

    async def __aenter__(self) -> KeySync:
        await self.reload()
        self._sub = await self._nc.subscribe(subjects.KEYS_CHANGED, cb=self._on_changed)
        self._task = asyncio.create_task(self._run(), name="key-sync")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None and self._nc.is_connected:
            await self._sub.unsubscribe()
