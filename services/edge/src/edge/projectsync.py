"""Keeps a ``ProjectCache`` equal to the ``projects`` and ``provider_credentials`` tables.

``ProjectSync`` is an async context manager built in the lifespan, the twin
of ``keysync.KeySync``. On entry it loads every project's settings and sealed
credentials (the edge refuses to start without them), subscribes to
``credentials.changed.v1`` and ``projects.changed.v1`` and starts one
background task, which does every reload, one at a time:

- ``{"project_id": "<id>"}`` (what admin writes publish) on either subject:
  reload that project, two indexed queries; a burst coalesces;
- any other payload: a full reload;
- every ``interval_s`` regardless: a full reload (the net for a missed message).

One task, as in ``KeySync``, so a full reload that read the tables before a
change committed cannot land after the targeted reload of that change. The
admin routes also patch their own edge's cache at once (``refresh``); the
echo of their own message then re-reads it in order. A failed reload keeps
serving the previous cache and is retried at the next wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from types import TracebackType

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects

from .credentials import SealedCredential
from .projects import ProjectCache, ProjectView, SealedProviderKey
from .store import ProviderCredential, credentials_repo, repo

__all__ = ["ProjectSync", "refresh"]

log = logging.getLogger(__name__)

_SUBJECTS = (subjects.CREDENTIALS_CHANGED, subjects.PROJECTS_CHANGED)


def _sealed(rows: Iterable[ProviderCredential]) -> list[SealedProviderKey]:
    return [
        SealedProviderKey(row.id, row.provider, SealedCredential(row.key_id, row.ciphertext))
        for row in rows
    ]


async def refresh(cache: ProjectCache, session: AsyncSession, project_id: str) -> None:
    """Re-read one project into ``cache`` (dropped if it no longer exists)."""
    project = await repo.get_project(session=session, project_id=project_id)
    if project is None:
        cache.remove(project_id)
        return
    rows = await credentials_repo.list_credentials(session=session, project_id=project_id)
    cache.put(project_id, ProjectView.build(project.settings or {}, _sealed(rows)))


class ProjectSync:
    """See the module docstring."""

    def __init__(
        self,
        cache: ProjectCache,
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
        self._subs: list[Subscription] = []

    async def reload(self) -> None:
        """Replace the cache with every project's current settings and credentials."""
        async with self._sessions() as session:
            projects = await repo.list_projects(session=session)
            rows = await credentials_repo.list_credentials(session=session)
        by_project: defaultdict[str, list[ProviderCredential]] = defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row)
        self._cache.replace(
            {p.id: ProjectView.build(p.settings or {}, _sealed(by_project[p.id])) for p in projects}
        )
        log.debug("project cache reloaded: %d projects", len(projects))

    async def reload_projects(self, project_ids: set[str]) -> None:
        """Refresh the views of ``project_ids``."""
        async with self._sessions() as session:
            for project_id in project_ids:
                await refresh(self._cache, session, project_id)

    async def _on_changed(self, msg: Msg) -> None:
        try:
            project_id = orjson.loads(msg.data).get("project_id")
        except (orjson.JSONDecodeError, AttributeError):
            project_id = None
        if isinstance(project_id, str) and project_id:
            self._pending.add(project_id)
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
            project_ids, self._pending, self._full = self._pending, set(), False
            try:
                if full:
                    next_full = time.monotonic() + self._interval
                    await self.reload()
                elif project_ids:
                    await self.reload_projects(project_ids)
            except (SQLAlchemyError, OSError):
                self._pending |= project_ids
                self._full |= full
                log.warning("project cache reload failed; serving the previous one", exc_info=True)

    async def __aenter__(self) -> ProjectSync:
        await self.reload()
        for subject in _SUBJECTS:
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_changed))
        self._task = asyncio.create_task(self._run(), name="project-sync")
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
        if self._nc.is_connected:
            for sub in self._subs:
                await sub.unsubscribe()
