"""Keeps a ``KeyCache`` equal to the ``api_keys`` table.

``KeySync`` is an async context manager built in the lifespan. On entry it
loads every key (the edge refuses to start without its keys), subscribes to
``keys.changed.v1`` and starts one background task, which does every reload,
one at a time:

- ``{"key_id": "<id>"}`` (what admin writes publish): reload just that key,
  one indexed query; a burst of messages coalesces into one query;
- any other payload (a project deleted, ``ensure-dev-key``, unparseable):
  a full reload;
- every ``interval_s`` regardless: a full reload, the safety net for a
  missed message.

Running them in one task is what keeps the cache right: a full reload whose
SELECT started before a revocation committed finishes before the message
about that revocation is applied, never after it.

A full reload first writes the ``last_used_at`` times the cache collected
since the previous one (best effort: lost if that write fails), then
replaces the cache wholesale. A failed reload keeps serving the previous
cache and is retried at the next wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from types import TracebackType

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .auth import KeyCache, KeyEntry
from .store import ApiKey, repo

__all__ = ["KeySync", "entry_for"]

log = logging.getLogger(__name__)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; every timestamp we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def entry_for(row: ApiKey) -> KeyEntry:
    """The cache entry of an ``api_keys`` row."""
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
        self._pending: set[str] = set()
        self._full = False
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None

    async def reload(self) -> None:
        """Flush last-use times, then replace the cache with the table's current keys."""
        used = self._cache.drain_last_used()
        async with self._sessions() as session:
            if used:
                await repo.touch_api_keys(session=session, last_used=used)
            rows = await repo.list_api_keys(session=session)
        self._cache.replace((row.key_hash, entry_for(row)) for row in rows)
        log.debug("key cache reloaded: %d keys", len(rows))

    async def reload_keys(self, key_ids: set[str]) -> None:
        """Refresh the entries of ``key_ids``: updated if the row exists, dropped if not."""
        async with self._sessions() as session:
            rows = await repo.get_api_keys(session=session, key_ids=key_ids)
        for row in rows:
            self._cache.put(row.key_hash, entry_for(row))
        for gone in key_ids - {row.id for row in rows}:
            self._cache.remove(gone)
        log.debug("key cache: %d keys refreshed", len(key_ids))

    async def _on_changed(self, msg: Msg) -> None:
        try:
            key_id = orjson.loads(msg.data).get("key_id")
        except (orjson.JSONDecodeError, AttributeError):
            key_id = None
        if isinstance(key_id, str) and key_id:
            self._pending.add(key_id)
        else:
            self._full = True
        self._wake.set()

    async def _run(self) -> None:
        next_full = time.monotonic() + self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_full - time.monotonic(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            full = self._full or time.monotonic() >= next_full
            key_ids, self._pending, self._full = self._pending, set(), False
            try:
                if full:
                    next_full = time.monotonic() + self._interval
                    await self.reload()
                elif key_ids:
                    await self.reload_keys(key_ids)
            except (SQLAlchemyError, OSError):
                # Keep the work for the next wake-up (at the latest, the next full reload).
                self._pending |= key_ids
                self._full |= full
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
