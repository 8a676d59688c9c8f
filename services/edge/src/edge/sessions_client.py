"""The edge's client of the sessions service (NATS request/reply): stored responses and
conversation history by session id.

Every call waits at most ``timeout_s`` (default 2 s) for sessions' reply and
raises a ``GatewayError`` otherwise, so a request never hangs on a missing
sessions service and never turns its absence into a 500:

    no responder, no reply in time, NATS trouble   -> ServiceUnavailable (503)
    reply with status "error", or unreadable       -> ServiceUnavailable (503)
    payload over the NATS server's max_payload     -> PayloadTooLarge (413)

Stored responses are scoped by project: ``get`` returns ``None`` for an id
that is unknown, expired or another project's, and ``delete`` returns False
for it.

Session history (``gateway_common.sessions_history`` has the contract) is
scoped by project *and* scope (the endpoint id). Its methods raise for what
the caller must answer as an error, with stable codes:

    session unknown, malformed, another project's or scope's
                        -> NotFound, code "session_not_found", param "session_id"
    session expired (append, history; ``open_history`` starts afresh instead
    and returns status "expired" with the new session)
                        -> NotFound, code "session_expired", param "session_id"
    sessions refused the request as malformed ("invalid")
                        -> InvalidRequest, code "invalid_session_request"

An append is also published, at the same time as its request, as a
``TurnsAppended`` transcript event on JetStream (``session.turn.appended.v1``,
``Nats-Msg-Id`` its event id, the trace context beside it): sessions' durable
consumer applies it, and whichever copy lands second stores nothing (both are
idempotent by request id). The reply after the commit gives the next request
read-your-writes; the event keeps the turns when sessions does not answer in
time: an append sessions did not answer (no responder, timeout, ``error``)
whose event JetStream acknowledged succeeds (``appended``, no ``expires_at``)
and sessions applies it when it can. Refusals (``not_found``, ``expired``,
``invalid``) are the reply's, whatever the stream said.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from pydantic import ValidationError

from gateway_common import subjects, telemetry
from gateway_common.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from gateway_common.events import TurnsAppended
from gateway_common.responses_store import (
    PutResponse,
    ResponseKey,
    StoredResponseRecord,
    StoreReply,
)
from gateway_common.sessions_history import (
    AppendReply,
    AppendTurns,
    HistoryKey,
    HistoryReply,
    OpenHistory,
    Turn,
)

__all__ = ["SESSION_EXPIRED", "SESSION_NOT_FOUND", "SessionsClient"]

log = logging.getLogger(__name__)

#: ``GatewayError.code`` of a session id that is unknown, or another project's or scope's.
SESSION_NOT_FOUND = "session_not_found"
#: ``GatewayError.code`` of a session that expired (append, history).
SESSION_EXPIRED = "session_expired"

_UNAVAILABLE = "The gateway's response store is unavailable. Please retry."
_HISTORY_UNAVAILABLE = "The gateway's session store is unavailable. Please retry."


R = TypeVar("R", StoreReply, HistoryReply, AppendReply)


def _too_large_for_responses() -> GatewayError:
    return PayloadTooLarge(
        "The conversation is too large to store; start a new one without "
        "previous_response_id, or send store=false.",
        code="conversation_too_large",
    )


def _too_large_for_history() -> GatewayError:
    return PayloadTooLarge(
        "The message is too large to keep in the session; send a shorter one, or call "
        "without session_id.",
        param="session_id",
        code="session_turn_too_large",
    )


def _history_refusal(reply: HistoryReply | AppendReply) -> GatewayError | None:
    if reply.status == "not_found":
        return NotFound("Session not found.", param="session_id", code=SESSION_NOT_FOUND)
    if reply.status == "expired":
        return NotFound(
            "Session has expired; start a new one without session_id.",
            param="session_id",
            code=SESSION_EXPIRED,
        )
    if reply.status == "invalid":
        return InvalidRequest(
            f"Invalid session request: {reply.message}", code="invalid_session_request"
        )
    return None


def _invalid(exc: ValidationError) -> InvalidRequest:
    """A request this edge could not even build (e.g. a time to live over the maximum)."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )
    return InvalidRequest(f"Invalid session request: {problems}", code="invalid_session_request")


class SessionsClient:
    """Stored responses and session history, one project at a time, over one NATS connection."""

    def __init__(self, nc: Client, *, timeout_s: float = 2.0) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._timeout = timeout_s

    async def put(self, record: StoredResponseRecord) -> None:
        """Store ``record``; returns once sessions has committed it."""
        await self._call(subjects.RESPONSES_PUT, PutResponse(record=record).to_bytes())

    async def get(self, project_id: str, response_id: str) -> StoredResponseRecord | None:
        """The stored response, or None when ``project_id`` has no live response of that id."""
        key = ResponseKey(project_id=project_id, response_id=response_id)
        reply = await self._call(subjects.RESPONSES_GET, key.to_bytes())
        return reply.record

    async def delete(self, project_id: str, response_id: str) -> bool:
        """Delete the stored response; False when ``project_id`` has none of that id."""
        key = ResponseKey(project_id=project_id, response_id=response_id)
        reply = await self._call(subjects.RESPONSES_DELETE, key.to_bytes())
        return reply.status == "ok"

    async def open_history(
        self,
        project_id: str,
        scope: str,
        session_id: str | None,
        *,
        ttl_seconds: int | None = None,
        max_turns: int | None = None,
        adopt: bool = False,
    ) -> HistoryReply:
        """Start a session (``session_id`` None) or resume one; its turns, oldest first.

        The reply's ``session_id`` is the session to use from now on: on status
        ``expired`` the named session had expired and a fresh one (``created``)
        replaces it. Raises ``NotFound`` (``session_not_found``) for an id this
        project and scope have no session of. ``ttl_seconds`` applies to a
        session started here (None: sessions' default).
        """
        try:
            request = OpenHistory(
                project_id=project_id,
                scope=scope,
                session_id=session_id,
                ttl_seconds=ttl_seconds,
                max_turns=max_turns,
                adopt=adopt,
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        reply = await self._history_call(subjects.HISTORY_OPEN, request.to_bytes(), HistoryReply)
        if reply.status == "expired":
            return reply
        refusal = _history_refusal(reply)
        if refusal is not None:
            raise refusal
        return reply

    async def append_turns(
        self,
        project_id: str,
        scope: str,
        session_id: str,
        turns: Sequence[Turn],
        *,
        request_id: str,
        ttl_seconds: int | None = None,
    ) -> AppendReply:
        """Append ``turns``; returns once sessions has committed them (or had them already).

        Safe to retry with the same ``request_id`` (``appended`` False then).
        Raises ``NotFound`` (``session_not_found`` / ``session_expired``).
        ``ttl_seconds`` None keeps the session's own time to live.
        """
        try:
            request = AppendTurns(
                project_id=project_id,
                scope=scope,
                session_id=session_id,
                request_id=request_id,
                turns=list(turns),
                ttl_seconds=ttl_seconds,
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        kept, answered = await asyncio.gather(
            self._publish_transcript(request),
            self._history_call(subjects.HISTORY_APPEND, request.to_bytes(), AppendReply),
            return_exceptions=True,
        )
        if isinstance(answered, ServiceUnavailable) and kept is True:
            log.warning("sessions did not answer an append; its transcript event keeps it")
            return AppendReply(status="ok", appended=True)
        if isinstance(answered, BaseException):
            raise answered
        refusal = _history_refusal(answered)
        if refusal is not None:
            raise refusal
        return answered

    async def _publish_transcript(self, request: AppendTurns) -> bool:
        """Publish ``request`` as a transcript event; True once JetStream acknowledged it."""
        event = TurnsAppended(event_id=TurnsAppended.event_id_of(request), append=request)
        try:
            await self._js.publish(
                subjects.SESSION_TURN_APPENDED,
                event.to_bytes(),
                timeout=self._timeout,
                headers=telemetry.inject({"Nats-Msg-Id": event.event_id}),
            )
        except (NatsError, TimeoutError) as exc:
            log.warning("transcript event not published: %r", exc)
            return False
        return True

    async def history(self, project_id: str, scope: str, session_id: str) -> HistoryReply:
        """A live session's turns, oldest first; raises ``NotFound`` otherwise (see module)."""
        try:
            key = HistoryKey(project_id=project_id, scope=scope, session_id=session_id)
        except ValidationError as exc:
            raise _invalid(exc) from None
        reply = await self._history_call(subjects.HISTORY_GET, key.to_bytes(), HistoryReply)
        refusal = _history_refusal(reply)
        if refusal is not None:
            raise refusal
        return reply

    async def _call(self, subject: str, payload: bytes) -> StoreReply:
        return await self._request(
            subject,
            payload,
            StoreReply,
            unavailable=_UNAVAILABLE,
            too_large=_too_large_for_responses,
        )

    async def _history_call(self, subject: str, payload: bytes, reply_type: type[R]) -> R:
        return await self._request(
            subject,
            payload,
            reply_type,
            unavailable=_HISTORY_UNAVAILABLE,
            too_large=_too_large_for_history,
        )

    async def _request(
        self,
        subject: str,
        payload: bytes,
        reply_type: type[R],
        *,
        unavailable: str,
        too_large: Callable[[], GatewayError],
    ) -> R:
        try:
            msg = await self._nc.request(
                subject, payload, timeout=self._timeout, headers=telemetry.inject()
            )
            reply = reply_type.model_validate_json(msg.data)
        except MaxPayloadError as exc:
            raise too_large() from exc
        except (NatsError, TimeoutError, ValidationError) as exc:
            log.warning("sessions request on %s failed: %r", subject, exc)
            raise ServiceUnavailable(unavailable) from exc
        if reply.status == "error":
            log.warning("sessions refused %s: %s", subject, reply.message)
            raise ServiceUnavailable(unavailable)
        return reply
