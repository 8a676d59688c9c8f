"""Keeps every edge's ``ConsoleSessions`` refusing the sessions signed out anywhere (a
``TableSync`` over ``console_logouts``).

Subject ``console.logout.v1``; ``{"sid": "<id>"}`` (what a logout publishes after its
commit) reads that row, anything else the whole table. The full reload every
``interval_s`` is the safety net for a missed message and what an edge started later
reads first. Both only add to the sessions' revoked set (``ConsoleSessions.absorb``).
"""

from __future__ import annotations

import time

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .console import ConsoleSessions
from .store import console_logouts
from .tablesync import TableSync

__all__ = ["ConsoleLogoutSync"]


class ConsoleLogoutSync(TableSync):
    """See the module docstring and ``tablesync``."""

    name = "console-logout-sync"
    subjects = (subjects.CONSOLE_LOGOUT,)
    id_field = "sid"

    def __init__(
        self,
        console: ConsoleSessions,
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        super().__init__(nc, interval_s=interval_s)
        self._console = console
        self._sessions = sessions

    async def reload(self) -> None:
        async with self._sessions() as session:
            rows = await console_logouts.list_logouts(session=session, now=int(time.time()))
        self._console.absorb({row.sid: row.expires_at for row in rows})

    async def reload_ids(self, ids: set[str]) -> None:
        async with self._sessions() as session:
            rows = await console_logouts.get_logouts(session=session, sids=ids)
        self._console.absorb({row.sid: row.expires_at for row in rows})
