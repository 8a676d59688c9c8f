"""The usage outbox: events JetStream did not acknowledge in time, kept on local disk.

When NATS stays unreachable longer than the publish retry window, the router
does not refuse the call it already made: it writes the usage event to this
outbox (one SQLite file under ``GATEWAY_DATA_DIR``, synchronous commit) and
answers. ``UsagePublisher`` replays the outbox with each event's own
``Nats-Msg-Id`` once NATS answers again, deleting an event only after its ack,
so a replay of an event the stream already holds is dropped (the stream's
duplicate window) and billing's event-id dedupe catches any later one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["UsageOutbox"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS outbox (event_id TEXT PRIMARY KEY, data BLOB NOT NULL)"


class UsageOutbox:
    """A durable FIFO of (event id, event bytes); every call runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    async def put(self, event_id: str, data: bytes) -> None:
        """Keep one event (durable on return); the same event twice is kept once."""
        await asyncio.to_thread(
            self._run, "INSERT OR IGNORE INTO outbox VALUES (?, ?)", (event_id, data)
        )

    async def oldest(self, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` events, oldest first."""
        return await asyncio.to_thread(
            self._run, "SELECT event_id, data FROM outbox ORDER BY rowid LIMIT ?", (limit,)
        )

    async def remove(self, event_id: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM outbox WHERE event_id = ?", (event_id,))

    async def count(self) -> int:
        rows = await asyncio.to_thread(self._run, "SELECT count(*) FROM outbox", ())
        return int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()
