"""Gateway-owned ``previous_response_id`` chains: expand each request, store each response.

One ``POST /v1/responses`` goes through two steps here:

    expand   The new input becomes items, each with an id (a string input is one user
             message). With ``previous_response_id``, the stored response is fetched from
             sessions (same project only; otherwise 404) and its input items and output
             items go in front of the new ones. The router gets one self-contained
             request, so the chain works for any provider and survives failover;
             ``previous_response_id`` stays in the body only to be echoed. Instructions
             are this request's own (as in OpenAI, they are not inherited).
    record   ``ChainRecorder``, the route's ``Shaper``: when the router's Response
             arrives (the unary body, or a stream's ``response.completed`` /
             ``response.incomplete`` event), it is stored with the expanded input and
             the client gets it only after sessions has committed it. A follow-up sent
             the instant a response arrives therefore always finds it. ``store: false``
             skips this, and a later ``previous_response_id`` to it is a 404.

Stream events are framed as OpenAI frames them (``event: <type>`` then
``data: <json>``) with no ``[DONE]``; the type is read from the event's
first key, which the router always writes first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError

from gateway_common.errors import GatewayError, NotFound
from gateway_common.openai import InputItem, InputItemList, InputMessage, Response, ResponsesRequest
from gateway_common.responses_store import StoredResponseRecord

from .sessions_client import SessionsClient

__all__ = [
    "ChainRecorder",
    "Turn",
    "expand",
    "input_item_page",
    "input_items",
    "response_not_found",
    "stored_response",
]

_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
_TYPE_PREFIX = b'{"type":"'
_FINAL_EVENTS = frozenset({b"response.completed", b"response.incomplete"})


@dataclass(frozen=True, slots=True)
class Turn:
    """One expanded request: the body for the router and what to store with its answer."""

    body: bytes
    project_id: str
    model: str
    input_items: list[dict[str, Any]]
    previous_response_id: str | None
    store: bool


def response_not_found(response_id: str, *, param: str | None = None) -> NotFound:
    """OpenAI's 404 for a response id this project cannot see."""
    return NotFound(f"Response with id '{response_id}' not found.", param=param)


async def stored_response(
    sessions: SessionsClient, project_id: str, response_id: str, *, param: str | None = None
) -> StoredResponseRecord:
    """The project's stored response; ``NotFound`` if it has none of that id."""
    record = await sessions.get(project_id, response_id)
    if record is None:
        raise response_not_found(response_id, param=param)
    return record


def _item(item: BaseModel) -> dict[str, Any]:
    data = item.model_dump(mode="json", exclude_none=True)
    if isinstance(item, InputMessage) and isinstance(item.content, str):
        kind = "output_text" if item.role == "assistant" else "input_text"
        data["content"] = [{"type": kind, "text": item.content}]
    if not data.get("id"):
        data["id"] = f"{_ID_PREFIXES.get(data['type'], 'item')}_{uuid.uuid4().hex}"
    return data


def input_items(value: str | Sequence[InputItem]) -> list[dict[str, Any]]:
    """The request's input as stored items: every item has an ``id`` and a ``type``,
    and message text is in content parts (as ``input_items`` lists them)."""
    if isinstance(value, str):
        value = [InputMessage(role="user", content=value)]
    return [_item(item) for item in value]


async def expand(
    raw: bytes, request: ResponsesRequest, *, project_id: str, sessions: SessionsClient
) -> Turn:
    """The self-contained request for ``request`` (module docstring, step ``expand``).

    Raises ``NotFound`` for an unknown or foreign ``previous_response_id``, and
    ``ServiceUnavailable`` when sessions does not answer.
    """
    previous = request.previous_response_id
    turn = Turn(raw, project_id, request.model, [], previous, request.store)
    if previous is None and not request.store:
        return turn  # nothing to look up, nothing to store: the bytes go as they came
    items = input_items(request.input)
    if previous is not None:
        record = await stored_response(sessions, project_id, previous, param="previous_response_id")
        items = [*record.input_items, *record.response.get("output", ()), *items]
    body = orjson.loads(raw)
    body["input"] = items
    return Turn(orjson.dumps(body), project_id, request.model, items, previous, request.store)


def _event_type(chunk: bytes) -> bytes:
    if chunk.startswith(_TYPE_PREFIX):
        end = chunk.find(b'"', len(_TYPE_PREFIX))
        if end > 0:
            return chunk[len(_TYPE_PREFIX) : end]
    kind = orjson.loads(chunk).get("type")
    return kind.encode() if isinstance(kind, str) else b"message"


class ChainRecorder:
    """The ``Shaper`` of ``POST /v1/responses`` (module docstring, step ``record``)."""

    def __init__(self, turn: Turn, sessions: SessionsClient) -> None:
        self._turn = turn
        self._sessions = sessions

    async def finish(self) -> bytes:
        """Nothing after the final event: the Responses API sends no ``[DONE]``."""
        return b""

    async def body(self, body: bytes) -> bytes:
        if self._turn.store:
            await self._store(orjson.loads(body))
        return body

    async def frame(self, chunk: bytes) -> bytes:
        kind = _event_type(chunk)
        if kind in _FINAL_EVENTS and self._turn.store:
            await self._store(orjson.loads(chunk)["response"])
        return b"event: " + kind + b"\ndata: " + chunk + b"\n\n"

    async def _store(self, response: dict[str, Any]) -> None:
        try:
            parsed = Response.model_validate(response)
        except ValidationError as exc:
            raise GatewayError("The response could not be stored.") from exc
        await self._sessions.put(
            StoredResponseRecord(
                id=parsed.id,
                project_id=self._turn.project_id,
                model=self._turn.model,
                previous_response_id=self._turn.previous_response_id,
                input_items=self._turn.input_items,
                response=response,
                created_at=parsed.created_at,
            )
        )


def input_item_page(
    items: list[dict[str, Any]],
    *,
    limit: int,
    order: Literal["asc", "desc"],
    after: str | None,
) -> InputItemList:
    """One page of ``items`` in OpenAI's cursor-list shape (``after``: the last id seen)."""
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    return InputItemList(
        data=page,
        first_id=page[0].get("id") if page else None,
        last_id=page[-1].get("id") if page else None,
        has_more=len(ordered) > limit,
    )
