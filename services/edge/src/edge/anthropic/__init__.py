"""Anthropic's Messages API at the edge: wire models, the translation both ways, the error shape.

    _wire       the request models of ``/v1/messages`` and ``/v1/messages/count_tokens``
    inbound     Messages request -> the OpenAI chat request the router routes
    outbound    the router's chat completion / chunks -> Message / stream events
                (``MessageStream`` is the route's ``Shaper``)
    errors      Anthropic's error shape and statuses, ``AnthropicRoute``

The route itself is ``edge.api.routes.messages``; see docs/anthropic-compatibility.md.
"""

from ._wire import CountTokensRequest, MessagesRequest
from .errors import (
    ANTHROPIC_VERSION_HEADER,
    AnthropicRoute,
    AnthropicVersionRoute,
    error_body,
    error_event,
    error_response,
    status_and_type,
)
from .inbound import to_chat
from .outbound import MessageStream, message_body, message_id, stop_reason, usage_json

__all__ = [
    "ANTHROPIC_VERSION_HEADER",
    "AnthropicRoute",
    "AnthropicVersionRoute",
    "CountTokensRequest",
    "MessageStream",
    "MessagesRequest",
    "error_body",
    "error_event",
    "error_response",
    "message_body",
    "message_id",
    "status_and_type",
    "stop_reason",
    "to_chat",
    "usage_json",
]
