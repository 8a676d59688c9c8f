"""Prompt apply: the conversation an endpoint sends, and the request body per model.

The conversation, in order::

    [{"role": "system", "content": system_prompt}]    when the endpoint has one
    + the session's history                           ``history``, fitted to the window
    + [{"role": "user", "content": rendered template}] when the endpoint has a
                                                       prompt_template (``template``)
    + the caller's messages                            ``message`` or ``messages``

The last two are the call's own messages (``own_messages``), built first: a call
needs something to say, the caller's messages or a template to render (400 naming
``message`` otherwise), and a missing variable (422) refuses it before a session is
opened. The conversation counts at most ``max_messages`` messages (400
``too_many_messages``).

The body sent for a model is ``{"model", **params, "messages", "stream"}``; the
provider-call step builds it once per model it tries (the endpoint's, then each
fallback), so each attempt names its own model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_common.errors import InvalidRequest

from ..endpoints import EndpointView
from .call import GatewayCall
from .template import render

__all__ = ["Prompt", "apply", "own_messages"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """The conversation of one call, and how to ask each model for it."""

    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any]
    stream: bool

    def body(self, model: str) -> bytes:
        """The chat completion request for ``model``."""
        return orjson.dumps(
            {"model": model, **self.params, "messages": list(self.messages), "stream": self.stream}
        )


def own_messages(call: GatewayCall, endpoint: EndpointView) -> list[Mapping[str, Any]]:
    """The call's own messages: the rendered template (if any), then the caller's; 400 when
    there is nothing to say, 422 ``missing_variable``."""
    if not call.messages and not endpoint.prompt_template:
        raise InvalidRequest(
            "Invalid request body: give exactly one of 'message' or 'messages'.",
            param="message",
            code="invalid_request_body",
        )
    own: list[Mapping[str, Any]] = []
    if endpoint.prompt_template:
        own.append({"role": "user", "content": render(endpoint.prompt_template, call.variables)})
    own.extend(call.messages)
    return own


def apply(
    call: GatewayCall,
    endpoint: EndpointView,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_messages: int,
) -> Prompt:
    """The call's ``Prompt``: the system prompt, then ``messages`` (the session's history, if
    any, and the call's own); 400 ``too_many_messages``."""
    conversation: list[Mapping[str, Any]] = []
    if endpoint.system_prompt:
        conversation.append({"role": "system", "content": endpoint.system_prompt})
    conversation.extend(messages)
    if len(conversation) > max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(conversation)}; the limit is {max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    return Prompt(
        tuple(conversation),
        endpoint.params,
        call.stream and endpoint.streaming_enabled,
    )
