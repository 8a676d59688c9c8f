"""Session history: seed 001's "pass ``session_id`` + the new user message; the gateway
stores the history and prepends it next time", as one step of prompt apply.

History lives in the sessions service (``gateway_common.sessions_history`` is the
contract, ``edge.sessions_client`` the client); this module never touches a table.
A session belongs to one project and one *scope*, the endpoint's id. Three parts:

    open     ``open_session``: on an endpoint with ``sessions_enabled``, a call without
             ``session_id`` starts a session; with one it reads the session's kept turns.
             ``session_id`` not a UUID: 400 ``invalid_session_id``; unknown, or another
             project's or endpoint's: 404 ``session_not_found`` (sessions cannot tell
             them apart, and neither can the caller); expired (no call for
             ``session_ttl_seconds``): a *new* session, in the same round trip, whose id
             the answer carries (``meta.session_expired``); ``session_id`` on an endpoint
             without sessions: 400 ``sessions_disabled``.
    fit      ``Session.prepend``: the kept turns go in front of the call's own messages
             (the endpoint's system prompt stays first: ``EndpointView.body``), the
             oldest dropped while the prompt would not fit the model's context window
             minus the room kept for the reply (``fit``); ``meta.history_truncated`` and
             ``meta.turns_dropped`` say so.
    record   ``SessionRecorder``, the call's ``Shaper`` (``edge.api.proxy``): the call's
             own turns (its messages minus ``system``/``developer`` ones: instructions
             are per call, as OpenAI's Responses API does not inherit them) and the
             assistant's reply are appended *before* the client gets the answer: a
             unary body after sessions committed them, a stream's ``[DONE]`` after the
             reply was assembled from its deltas and committed. So the very next call
             with that ``session_id`` sees them. A stream that fails stores nothing;
             an append that fails is the call's error (503; 404 if the session expired
             meanwhile), never an answer that silently was not kept.

The token count is a bound, not an estimate: one token per UTF-8 byte of text
(``byte_bound``; a byte-level BPE token is at least one byte), counted with
``gateway_common.tokens.chat_prompt_tokens``'s framing rules, so fitted history
never overflows the window; the price is that English text fills only about a
quarter of it before the oldest turns go.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gateway_common.errors import InvalidRequest, ProviderError, ServiceUnavailable
from gateway_common.sessions_history import MAX_TTL_SECONDS, Turn
from gateway_common.tokens import TextCount, chat_prompt_tokens

from ..endpoints import EndpointView
from ..sessions_client import SessionsClient

__all__ = [
    "SESSION_HEADER",
    "Session",
    "SessionRecorder",
    "byte_bound",
    "fit",
    "open_for_call",
    "open_session",
    "own_turns",
    "reply_room",
    "session_ttl",
    "session_uuid",
]

#: Response header naming the call's session (streams carry their meta in headers).
SESSION_HEADER: Final = "x-switchyard-session-id"
#: Roles that are the call's own instructions, never stored as history.
_NOT_KEPT = frozenset({"system", "developer"})
_DONE = b"data: [DONE]\n\n"
_EMPTY_PROMPT: Final = chat_prompt_tokens({"messages": []}, lambda _: 0)


def byte_bound(text: str) -> int:
    """At least as many tokens as ``text`` has, in any byte-level tokenizer: its UTF-8 bytes."""
    return len(text.encode("utf-8"))


def session_ttl(ttl_seconds: int) -> int:
    """The endpoint's ``session_ttl_seconds`` within what sessions accepts (1 s to 30 days)."""
    return min(max(ttl_seconds, 1), MAX_TTL_SECONDS)


def session_uuid(value: str) -> str:
    """``value`` as a canonical UUID string; 400 ``invalid_session_id`` when it is none."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(
            "Invalid 'session_id': expected a UUID, as returned in meta.session_id.",
            param="session_id",
            code="invalid_session_id",
        ) from None


def _message_tokens(message: Mapping[str, Any], count: TextCount) -> int:
    return chat_prompt_tokens({"messages": [message]}, count) - _EMPTY_PROMPT


def reply_room(window: int, endpoint_cap: int | None, model_max_output: int) -> int:
    """Tokens kept free for the reply: the endpoint's own cap, else the model's maximum
    output, never more than half the window (so a model whose maximum output is its whole
    window still gets history)."""
    room = endpoint_cap or model_max_output
    return min(room, window // 2)


def fit(
    history: Sequence[Mapping[str, Any]],
    fixed: Sequence[Mapping[str, Any]],
    *,
    window: int,
    reserve: int,
    max_turns: int | None = None,
    count: TextCount = byte_bound,
) -> tuple[list[Mapping[str, Any]], int]:
    """The newest turns of ``history`` that fit before ``fixed`` (system prompt and the call's
    messages) in ``window`` tokens minus ``reserve``, at most ``max_turns`` of them, and how
    many were dropped.

    ``window`` 0 (unknown) bounds nothing but the count. After the cut, leading turns that
    are not ``user`` go as well, so the kept history starts with a question, not half an
    exchange. If the call's own messages do not fit, every turn goes (the provider then
    answers the overflow as it would without sessions).
    """
    if not history:
        return [], 0
    start = 0 if max_turns is None else max(len(history) - max(max_turns, 0), 0)
    if window > 0:
        room = window - reserve - chat_prompt_tokens({"messages": list(fixed)}, count)
        costs = [_message_tokens(turn, count) for turn in history]
        total = sum(costs[start:])
        while start < len(history) and total > room:
            total -= costs[start]
            start += 1
    if start:
        while start < len(history) and history[start].get("role") != "user":
            start += 1
    return list(history[start:]), start


@dataclass(slots=True)
class Session:
    """The call's session: its id, the history kept for this call, and what the answer says."""

    session_id: str
    history: list[Mapping[str, Any]] = field(default_factory=list)
    created: bool = False
    expired: bool = False
    turns_dropped: int = 0
    truncated: bool = False

    def prepend(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        system_prompt: str | None,
        window: int,
        reserve: int,
        max_messages: int | None = None,
    ) -> list[Mapping[str, Any]]:
        """The history that fits, then ``messages``; records what was dropped (see ``fit``).

        ``max_messages`` bounds the whole conversation sent, system prompt included.
        """
        fixed: list[Mapping[str, Any]] = []
        if system_prompt:
            fixed.append({"role": "system", "content": system_prompt})
        fixed.extend(messages)
        max_turns = None if max_messages is None else max_messages - len(fixed)
        kept, dropped = fit(
            self.history, fixed, window=window, reserve=reserve, max_turns=max_turns
        )
        self.turns_dropped += dropped
        self.truncated = self.truncated or dropped > 0
        return [*kept, *messages]

    def meta(self) -> dict[str, Any]:
        """What the answer's ``meta`` says about the session."""
        return {
            "session_id": self.session_id,
            "session_created": self.created,
            "session_expired": self.expired,
            "history_truncated": self.truncated,
            "turns_dropped": self.turns_dropped,
        }


async def open_session(
    sessions: SessionsClient,
    *,
    project_id: str,
    scope: str,
    enabled: bool,
    ttl_seconds: int,
    session_id: str | None,
) -> Session | None:
    """The call's session, or None when the endpoint has sessions off (module: ``open``)."""
    if not enabled:
        if session_id is not None:
            raise InvalidRequest(
                "Sessions are not enabled on this endpoint: send the whole conversation in "
                "'messages', without 'session_id'.",
                param="session_id",
                code="sessions_disabled",
            )
        return None
    canonical = None if session_id is None else session_uuid(session_id)
    reply = await sessions.open_history(
        project_id, scope, canonical, ttl_seconds=session_ttl(ttl_seconds)
    )
    if reply.session_id is None:  # sessions answered ok without a session: not the contract
        raise ServiceUnavailable("The gateway's session store is unavailable. Please retry.")
    return Session(
        session_id=reply.session_id,
        history=[{"role": turn.role, "content": turn.content} for turn in reply.turns],
        created=reply.created,
        expired=reply.status == "expired",
        truncated=reply.truncated,
    )


def own_turns(messages: Sequence[Mapping[str, Any]]) -> list[Turn]:
    """The call's messages kept as history: all but its instructions (module: ``record``)."""
    return [
        Turn(role=str(m["role"]), content=m.get("content"))
        for m in messages
        if m.get("role") not in _NOT_KEPT
    ]


def _reply_text(body: bytes) -> str:
    """The first choice's message content of an OpenAI chat completion ("" if none)."""
    try:
        choices = orjson.loads(body).get("choices") or []
        content = choices[0].get("message", {}).get("content") if choices else None
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        raise ProviderError("The provider's answer could not be read.") from None
    return content if isinstance(content, str) else ""


def _delta_text(chunk: bytes) -> str:
    """The content delta of choice 0 in one chat completion chunk ("" if none)."""
    try:
        choices = orjson.loads(chunk).get("choices") or []
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            return content if isinstance(content, str) else ""
    return ""


class SessionRecorder:
    """The ``Shaper`` of a call with a session: stores its turns before the client sees the
    answer (module: ``record``). Frames chat chunks as ``/v1`` does (``data: <chunk>``, then
    ``[DONE]``)."""

    def __init__(
        self,
        sessions: SessionsClient,
        session: Session,
        *,
        project_id: str,
        scope: str,
        request_id: str,
        turns: Sequence[Turn],
        ttl_seconds: int,
    ) -> None:
        self._sessions = sessions
        self._session = session
        self._project_id = project_id
        self._scope = scope
        self._request_id = request_id
        self._turns = list(turns)
        self._ttl = session_ttl(ttl_seconds)
        self._parts: list[str] = []

    async def body(self, body: bytes) -> bytes:
        await self._store(_reply_text(body))
        return body

    async def frame(self, chunk: bytes) -> bytes:
        self._parts.append(_delta_text(chunk))
        return b"data: " + chunk + b"\n\n"

    async def finish(self) -> bytes:
        await self._store("".join(self._parts))
        return _DONE

    async def store(self, reply: str) -> None:
        """Append the call's turns and ``reply`` now (the pipeline's log step calls it for a
        unary answer after the output checks, and ``OutputStream`` before a stream's end)."""
        await self._store(reply)

    async def _store(self, reply: str) -> None:
        await self._sessions.append_turns(
            self._project_id,
            self._scope,
            self._session.session_id,
            [*self._turns, Turn(role="assistant", content=reply)],
            request_id=self._request_id,
            ttl_seconds=self._ttl,
        )


async def open_for_call(
    sessions: SessionsClient,
    *,
    endpoint: EndpointView,
    project_id: str,
    session_id: str | None,
    request_id: str,
    own: Sequence[Mapping[str, Any]],
    limits: tuple[int, int] | None,
    max_messages: int,
) -> tuple[Session | None, list[Mapping[str, Any]], SessionRecorder | None]:
    """The prompt-apply step's session part (``edge.pipeline.run``): the call's session (None:
    sessions off), ``own`` (the call's messages, template included) with the history that
    fits in front, and the recorder that stores the call's turns. ``limits`` is the model's
    ``(context_window, max_output_tokens)`` from the catalog (None: unknown)."""
    session = await open_session(
        sessions,
        project_id=project_id,
        scope=endpoint.endpoint_id,
        enabled=endpoint.sessions_enabled,
        ttl_seconds=endpoint.session_ttl_seconds,
        session_id=session_id,
    )
    if session is None:
        return None, list(own), None
    window, most = limits or (0, 0)
    sent = session.prepend(
        own,
        system_prompt=endpoint.system_prompt,
        window=window,
        reserve=reply_room(window, endpoint.max_output_tokens, most),
        max_messages=max_messages,
    )
    recorder = SessionRecorder(
        sessions,
        session,
        project_id=project_id,
        scope=endpoint.endpoint_id,
        request_id=request_id,
        turns=own_turns(own),
        ttl_seconds=endpoint.session_ttl_seconds,
    )
    return session, sent, recorder
