"""The request/reply contract for stored Responses, between the edge and sessions.

The edge owns nothing durable; sessions owns table ``stored_responses``. They
talk over core NATS request/reply (subjects in ``gateway_common.subjects``),
JSON bodies of the models below, one ``StoreReply`` per request:

    RESPONSES_PUT     PutResponse  -> ok                   sent only after the commit
    RESPONSES_GET     ResponseKey  -> ok + record | not_found
    RESPONSES_DELETE  ResponseKey  -> ok | not_found

Every lookup is scoped by ``project_id``: another project's response is
``not_found``, indistinguishable from one that never existed. A reply with
status ``error`` means sessions could not do it (its database failed); the
caller treats it like no answer at all.

A record's ``input_items`` is the whole input the model saw (the chain's
earlier inputs and outputs, then this request's items), so a follow-up needs
exactly one lookup however long the chain, and a record stands alone once a
response before it is deleted or expires.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .messages import NatsMessage as _Message

__all__ = ["PutResponse", "ResponseKey", "StoreReply", "StoredResponseRecord"]


class StoredResponseRecord(_Message):
    """One stored Response and everything needed to continue its chain."""

    id: str = Field(description="The response id (``resp_...``).")
    project_id: str = Field(description="Owner; the only project that can see it.")
    model: str = Field(description="Model the response was created with.")
    previous_response_id: str | None = Field(default=None, description="As the client sent it.")
    input_items: list[dict[str, Any]] = Field(
        description="The full input the model saw, in order, each item with an ``id``."
    )
    response: dict[str, Any] = Field(description="The Response object as returned to the client.")
    created_at: int = Field(description="Unix seconds, as in the Response object.")


class PutResponse(_Message):
    """Store ``record`` (idempotent for the same id and project)."""

    record: StoredResponseRecord


class ResponseKey(_Message):
    """Names one response of one project."""

    project_id: str
    response_id: str


class StoreReply(_Message):
    """Sessions' answer to any of the three requests."""

    status: Literal["ok", "not_found", "error"]
    record: StoredResponseRecord | None = Field(default=None, description="Set by a found GET.")
    message: str = Field(default="", description="Why, for status ``error`` (no user data).")
