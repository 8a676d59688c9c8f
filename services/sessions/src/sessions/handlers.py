"""NATS request/reply handlers: stored Responses for the edge's previous_response_id chains.

    RESPONSES_PUT     store the record, reply ``ok`` only after the commit
    RESPONSES_GET     reply ``ok`` + record, or ``not_found`` (unknown, foreign, expired)
    RESPONSES_DELETE  reply ``ok`` or ``not_found``

Subscriptions, in-flight tasks, error replies and ``aclose`` come from
``sessions.responder.Responder``; a request that cannot be parsed, or whose
database work fails, gets status ``error`` at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects
from gateway_common.responses_store import (
    PutResponse,
    ResponseKey,
    StoredResponseRecord,
    StoreReply,
)

from .metrics import SessionsMetrics
from .responder import Operation, Responder
from .store import repo
from .store.models import StoredResponse

__all__ = ["ResponsesResponder"]

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


class ResponsesResponder(Responder):
    """Serves the stored-responses subjects over one sessionmaker (see module docstring)."""

    label = "stored responses"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: int,
        max_in_flight: int = 64,
        metrics: SessionsMetrics | None = None,
    ) -> None:
        super().__init__(max_in_flight=max_in_flight, metrics=metrics)
        self._sessions = sessions
        self._ttl_s = ttl_s

    def operations(self) -> Mapping[str, Operation]:
        """The three stored-responses subjects."""
        return {
            subjects.RESPONSES_PUT: self._put,
            subjects.RESPONSES_GET: self._get,
            subjects.RESPONSES_DELETE: self._delete,
        }

    def failure(self, subject: str, message: str) -> StoreReply:
        """Status ``error``: the caller treats it like no answer."""
        return StoreReply(status="error", message=message)

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
