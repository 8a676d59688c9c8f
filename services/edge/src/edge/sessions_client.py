"""The edge's client of the sessions service's stored responses (NATS request/reply).

Every call waits at most ``timeout_s`` (default 2 s) for sessions' reply and
raises a ``GatewayError`` otherwise, so a Responses request never hangs on
a missing sessions service and never turns its absence into a 500:

    no responder, no reply in time, NATS trouble   -> ServiceUnavailable (503)
    reply with status "error"                      -> ServiceUnavailable (503)
    payload over the NATS server's max_payload     -> PayloadTooLarge (413)

Lookups are scoped by project: ``get`` returns ``None`` for an id that is
unknown, expired or another project's, and ``delete`` returns False for it.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from pydantic import ValidationError

from gateway_common import subjects
from gateway_common.errors import PayloadTooLarge, ServiceUnavailable
from gateway_common.responses_store import (
    PutResponse,
    ResponseKey,
    StoredResponseRecord,
    StoreReply,
)

__all__ = ["SessionsClient"]

log = logging.getLogger(__name__)

_UNAVAILABLE = "The gateway's response store is unavailable. Please retry."


class SessionsClient:
    """Stored responses of one project at a time, over one NATS connection."""

    def __init__(self, nc: Client, *, timeout_s: float = 2.0) -> None:
        self._nc = nc
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

    async def _call(self, subject: str, payload: bytes) -> StoreReply:
        try:
            msg = await self._nc.request(subject, payload, timeout=self._timeout)
            reply = StoreReply.model_validate_json(msg.data)
        except MaxPayloadError as exc:
            raise PayloadTooLarge(
                "The conversation is too large to store; start a new one without "
                "previous_response_id, or send store=false.",
                code="conversation_too_large",
            ) from exc
        except (NatsError, TimeoutError, ValidationError) as exc:
            log.warning("sessions request on %s failed: %r", subject, exc)
            raise ServiceUnavailable(_UNAVAILABLE) from exc
        if reply.status == "error":
            log.warning("sessions refused %s: %s", subject, reply.message)
            raise ServiceUnavailable(_UNAVAILABLE)
        return reply
