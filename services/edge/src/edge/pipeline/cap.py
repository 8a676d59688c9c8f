"""The per-request token cap (``max_request_tokens``): part of seed 001's budget step.

A call may need at most ``max_request_tokens``: its estimated prompt tokens plus
its max output. Over the cap: 422 ``max_request_tokens_exceeded``, before the
guardrails, the schemas and the router (seed 001's "per-request token cap
exceeded", a budget message).

    prompt tokens   ``gateway_common.tokens.chat_prompt_tokens`` with its estimate (one
                    token per 6 characters, plus each message's framing) over the
                    system prompt, the prompt template filled with the call's variables
                    (a placeholder without its variable counted as written) and the
                    caller's messages. The session history is loaded later in the
                    pipeline and is not counted here.
    max output      the endpoint's ``max_completion_tokens`` / ``max_tokens`` parameter,
                    else the catalog's ``max_output_tokens`` of the endpoint's model,
                    else its ``context_window``; so an endpoint with a cap below its
                    model's maximum output sets ``params.max_tokens``.

The monthly budget, the other half of the budget step, is checked next (``run``):
``Upstream.check_budget`` with ``estimated_body``, so an exhausted budget is refused
before the guardrails; ``Proxy.forward`` then admits the exact body it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from gateway_common import tokens
from gateway_common.errors import InvalidRequest

from ..endpoints import EndpointView
from .call import GatewayCall
from .template import fill

__all__ = ["CAP_EXCEEDED", "check_request_tokens", "estimated_body", "estimated_prompt_tokens"]

CAP_EXCEEDED: Final = "max_request_tokens_exceeded"


def _estimated_messages(call: GatewayCall, endpoint: EndpointView) -> list[Any]:
    """The prompt this call will send, without its session history (module docstring)."""
    messages: list[Any] = []
    if endpoint.system_prompt:
        messages.append({"role": "system", "content": endpoint.system_prompt})
    if endpoint.prompt_template:
        messages.append({"role": "user", "content": fill(endpoint.prompt_template, call.variables)})
    messages.extend(call.messages)
    return messages


def estimated_prompt_tokens(call: GatewayCall, endpoint: EndpointView) -> int:
    """The estimate of the prompt this call will send (module docstring)."""
    return tokens.chat_prompt_tokens(
        {"messages": _estimated_messages(call, endpoint)}, tokens.estimate
    )


def estimated_body(call: GatewayCall, endpoint: EndpointView) -> bytes:
    """A chat body of that estimate, for the monthly budget's check before the guardrails."""
    return orjson.dumps({"model": endpoint.model, "messages": _estimated_messages(call, endpoint)})


def check_request_tokens(
    call: GatewayCall, endpoint: EndpointView, output_limit: Callable[[str], int | None]
) -> None:
    """Nothing when the endpoint has no cap or the call fits; else 422 naming both numbers.

    ``output_limit(model)`` is the catalog's largest output of ``model`` (None: unknown).
    """
    cap = endpoint.max_request_tokens
    if cap is None:
        return
    prompt = estimated_prompt_tokens(call, endpoint)
    output = endpoint.max_output_tokens or output_limit(endpoint.model) or 0
    if prompt + output > cap:
        raise InvalidRequest(
            f"This request may use {prompt + output} tokens ({prompt} estimated in the prompt, "
            f"{output} of output at most), more than this endpoint's per-request cap of "
            f"{cap} tokens (max_request_tokens). Shorten the input or lower max_tokens.",
            code=CAP_EXCEEDED,
            http_status=422,
        )
