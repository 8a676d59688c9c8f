"""NATS request/reply handlers: stored Responses for the edge's previous_response_id chains.

    RESPONSES_PUT     store the record, reply ``ok`` only after the commit
    RESPONSES_GET     reply ``ok`` + record, or ``not_found`` (unknown, foreign, expired)
    RESPONSES_DELETE  reply ``ok`` or ``not_found``

Subscriptions join queue group ``sessions`` so replicas share requests. A
nats-py subscription runs its callback one message at a time, so each
message is handled in its own task (at most ``max_in_flight`` at once; past
that the subscription waits), which keeps one slow commit from holding up
every lookup. A request that cannot be parsed, or whose database work fails,
gets status ``error`` at once rather than leaving the caller to time out.
``aclose`` drains the subscriptions and waits for the tasks in flight, so it
must run before the engine is disposed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects
from gateway_common.responses_store import (
    PutResponse,
    ResponseKey,
    StoredResponseRecord,
    StoreReply,
)

from .store import repo
from .store.models import StoredResponse

__all__ = ["ResponsesResponder"]

log = logging.getLogger(__name__)

_Operation = Callable[[bytes], Awaitable[StoreReply]]
_OK = StoreReply(status="ok")
_NOT_FOUND = StoreReply(status="not_found")


def _record(row: StoredResponse) -> StoredResponseRecord:
    return StoredResponseRecord(
        id=row.id,
        project_id=row.project_id,
        model=row.model,
        previous_response_id=row.previous_response_id,
        input_items=row.input_items,
        response=row.response,
        created_at=int(row.created_at.timestamp()),
    )


class ResponsesResponder:
    """Serves the stored-responses subjects over one sessionmaker (see module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: int,
        max_in_flight: int = 64,
    ) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    async def start(self, nc: Client) -> None:
        """Subscribe to the three subjects (queue group ``sessions``)."""
        operations: dict[str, _Operation] = {
            subjects.RESPONSES_PUT: self._put,
            subjects.RESPONSES_GET: self._get,
            subjects.RESPONSES_DELETE: self._delete,
        }
        for subject, operation in operations.items():
            self._subs.append(
                await nc.subscribe(
                    subject, queue=subjects.SESSIONS_QUEUE, cb=self._spawn(operation)
                )
            )

    async def aclose(self) -> None:
        """Stop taking requests, answer the ones already received, wait for them all."""
        for sub in self._subs:
            await sub.drain()
        self._subs.clear()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, operation: _Operation) -> Callable[[Msg], Awaitable[None]]:
        async def callback(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(msg, operation))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return callback

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg, operation: _Operation) -> None:
        try:
            reply = await operation(msg.data)
        except ValidationError:
            reply = StoreReply(status="error", message="malformed request")
        except SQLAlchemyError as exc:
            log.error("stored responses: database error on %s: %s", msg.subject, exc)
            reply = StoreReply(status="error", message="database error")
        try:
            await msg.respond(reply.to_bytes())
        except NatsError as exc:
            log.warning("stored responses: reply on %s not sent: %s", msg.subject, exc)

    async def _put(self, data: bytes) -> StoreReply:
        record = PutResponse.model_validate_json(data).record
        async with self._sessions() as session:
            stored = await repo.put_response(session=session, record=record, ttl_s=self._ttl_s)
        return _OK if stored else StoreReply(status="error", message="id taken")

    async def _get(self, data: bytes) -> StoreReply:
        key = ResponseKey.model_validate_json(data)
        async with self._sessions() as session:
            row = await repo.get_response(
                session=session, project_id=key.project_id, response_id=key.response_id
            )
            return _NOT_FOUND if row is None else StoreReply(status="ok", record=_record(row))

    async def _delete(self, data: bytes) -> StoreReply:
        key = ResponseKey.model_validate_json(data)
        async with self._sessions() as session:
            deleted = await repo.delete_response(
                session=session, project_id=key.project_id, response_id=key.response_id
            )
        return _OK if deleted else _NOT_FOUND
