"""The reload loop shared by the edge's in-memory copies of its tables.

A ``TableSync`` is an async context manager built in the lifespan. On entry
it loads everything (the edge refuses to start without it), subscribes to its
change subjects and starts one background task, which does every reload, one
at a time:

- ``{"<id_field>": "<id>"}`` (what admin writes publish): reload just those
  rows; a burst of messages coalesces into one targeted reload;
- any other payload: a full reload;
- every ``interval_s`` regardless: a full reload, the safety net for a missed
  message.

Running them in one task is what keeps a copy right: a full reload whose
SELECT started before a change committed finishes before the message about
that change is applied, never after it. A failed reload keeps serving the
previous copy and is retried at the next wake-up.

Subclasses say what a full and a targeted reload read (``reload``,
``reload_ids``); this class owns the scheduling. ``ProjectTableSync`` is the
common case of a copy with one view per project, built from the project's
row and its rows of one table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from .store import Project, repo

__all__ = ["ProjectCopy", "ProjectTableSync", "TableSync"]

log = logging.getLogger(__name__)

V = TypeVar("V")
V_contra = TypeVar("V_contra", contravariant=True)


class TableSync(ABC):
    """See the module docstring. ``name`` labels the task and the logs."""

    name: str
    subjects: Sequence[str]
    id_field: str

    def __init__(self, nc: Client, *, interval_s: float) -> None:
        self._nc = nc
        self._interval = interval_s
        self._wake = asyncio.Event()
        self._pending: set[str] = set()
        self._full = False
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []

    @abstractmethod
    async def reload(self) -> None:
        """Replace the whole copy with the tables' current rows."""

    @abstractmethod
    async def reload_ids(self, ids: set[str]) -> None:
        """Refresh the rows of ``ids``: updated if they exist, dropped if not."""

    async def _on_changed(self, msg: Msg) -> None:
        try:
            changed = orjson.loads(msg.data).get(self.id_field)
        except (orjson.JSONDecodeError, AttributeError):
            changed = None
        if isinstance(changed, str) and changed:
            self._pending.add(changed)
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
            ids, self._pending, self._full = self._pending, set(), False
            try:
                if full:
                    next_full = time.monotonic() + self._interval
                    await self.reload()
                elif ids:
                    await self.reload_ids(ids)
            except (SQLAlchemyError, OSError):
                # Keep the work for the next wake-up (at the latest, the next full reload).
                self._pending |= ids
                self._full |= full
                log.warning("%s reload failed; serving the previous copy", self.name, exc_info=True)

    async def __aenter__(self) -> Self:
        await self.reload()
        for subject in self.subjects:
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_changed))
        self._task = asyncio.create_task(self._run(), name=self.name)
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


class ProjectCopy(Protocol[V_contra]):
    """An in-memory copy with one view per project id."""

    def replace(self, views: Mapping[str, V_contra]) -> None: ...

    def put(self, project_id: str, view: V_contra) -> None: ...

    def remove(self, project_id: str) -> None: ...


class _ProjectRow(Protocol):
    @property
    def project_id(self) -> str: ...


R = TypeVar("R", bound=_ProjectRow)


class ProjectTableSync(TableSync, Generic[R, V]):
    """Keeps a ``ProjectCopy`` equal to ``projects`` and one table whose rows belong to a
    project; ``{"project_id": ...}`` messages reload that project (two indexed queries).

    Subclasses say which rows (``rows``) and how a project's view is built
    (``view``). ``refresh`` re-reads one project into a copy: the admin routes
    call it after a write, so their own edge is current at once.
    """

    id_field = "project_id"

    def __init__(
        self,
        copy: ProjectCopy[V],
        sessions: async_sessionmaker[AsyncSession],
        nc: Client,
        *,
        interval_s: float,
    ) -> None:
        super().__init__(nc, interval_s=interval_s)
        self._copy = copy
        self._sessions = sessions

    @staticmethod
    @abstractmethod
    async def rows(session: AsyncSession, project_id: str | None) -> Sequence[R]:
        """The table's rows of ``project_id``, or of every project when it is ``None``."""

    @staticmethod
    @abstractmethod
    def view(project: Project, rows: Sequence[R]) -> V:
        """The copy's entry for ``project`` and its ``rows``."""

    @classmethod
    async def refresh(cls, copy: ProjectCopy[V], session: AsyncSession, project_id: str) -> None:
        """Re-read one project into ``copy`` (dropped if the project is gone)."""
        project = await repo.get_project(session=session, project_id=project_id)
        if project is None:
            copy.remove(project_id)
            return
        copy.put(project_id, cls.view(project, await cls.rows(session, project_id)))

    async def reload(self) -> None:
        async with self._sessions() as session:
            projects = await repo.list_projects(session=session)
            rows = await self.rows(session, None)
        by_project: defaultdict[str, list[R]] = defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row)
        self._copy.replace({p.id: self.view(p, by_project[p.id]) for p in projects})
        log.debug("%s: %d projects, %d rows", self.name, len(projects), len(rows))

    async def reload_ids(self, ids: set[str]) -> None:
        async with self._sessions() as session:
            for project_id in ids:
                await self.refresh(self._copy, session, project_id)
