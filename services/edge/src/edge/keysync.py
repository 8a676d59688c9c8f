"""Keeps a ``KeyCache`` equal to the ``api_keys`` table (a ``TableSync``).

Subject ``keys.changed.v1``; ``{"key_id": "<id>"}`` reloads that key with one
indexed query, anything else the whole table. A full reload first writes the
``last_used_at`` times the cache collected since the previous one (best
effort: lost if that write fails), then replaces the cache wholesale.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nats.aio.client import Client
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .auth import KeyCache, KeyEntry, KeyLoader
from .pipeline.ratelimit import RateLimits
from .store import ApiKey, repo
from .tablesync import TableSync

__all__ = ["KeySync", "entry_for", "key_loader"]

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
        rate_limits=RateLimits.model_validate(row.rate_limits) if row.rate_limits else None,
        allowed_models=None if row.allowed_models is None else frozenset(row.allowed_models),
    )


def key_loader(sessions: async_sessionmaker[AsyncSession]) -> KeyLoader:
    """``KeyCache``'s lookup of a hash it does not hold: one indexed query; None when
    the table has no such key or cannot be read (the caller then gets its 401)."""

    async def load(key_hash: str) -> KeyEntry | None:
        try:
            async with sessions() as session:
                row = await repo.get_api_key_by_hash(session=session, key_hash=key_hash)
        except (SQLAlchemyError, OSError):
            log.warning("key lookup on a cache miss failed", exc_info=True)
            return None
        return None if row is None else entry_for(row)

    return load


class KeySync(TableSync):
    """See the module docstring and ``tablesync``."""

    name = "key-sync"
    subjects = (subjects.KEYS_CHANGED,)
    id_field = "key_id"

    def __init__(
        self,
        cache: KeyCache,
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        super().__init__(nc, interval_s=interval_s)
        self._cache = cache
        self._sessions = sessions

    async def reload(self) -> None:
        """Flush last-use times, then replace the cache with the table's current keys."""
        used = self._cache.drain_last_used()
        async with self._sessions() as session:
            if used:
                await repo.touch_api_keys(session=session, last_used=used)
            rows = await repo.list_api_keys(session=session)
        self._cache.replace((row.key_hash, entry_for(row)) for row in rows)
        log.debug("key cache reloaded: %d keys", len(rows))

    async def reload_ids(self, ids: set[str]) -> None:
        """Refresh the entries of the keys ``ids``: updated if the row exists, dropped if not."""
        async with self._sessions() as session:
            rows = await repo.get_api_keys(session=session, key_ids=ids)
        for row in rows:
            self._cache.put(row.key_hash, entry_for(row))
        for gone in ids - {row.id for row in rows}:
            self._cache.remove(gone)
        log.debug("key cache: %d keys refreshed", len(ids))
