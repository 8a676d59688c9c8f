"""Seed 001's pipeline, declared once: ``run`` is the whole order, one line a step.

    auth            the surface's (a key of the project, with the scope it needs)
    rate limit      ``rate_limit`` (slot: 14r fills it with ``edge.pipeline.ratelimit``)
    budget          the per-request token cap (``cap``); the monthly budget is admitted
                    in ``Proxy.forward``, which prices the exact body it sends, before any
                    provider is called
    guardrails      on the input (``guard_input``)
    input schema    ``variables`` against ``input_schema`` (``input_schema``)
    prompt apply    session history (``session_history``, slot: 14s), then system prompt,
                    history, rendered ``prompt_template``, the caller's messages (``prompt``)
    provider call   with the router's failover, then the endpoint's ``fallbacks``
                    (``fallbacks``), each attempt through the surface's ``Upstream``
    output          output schema, then output guardrails (``output``; on a stream, the
                    same checks ride along as the stream's shaper)
    log             the usage event is the router's (published before a unary answer);
                    the turn is stored by ``record_turn`` (slot: 14s)
    response        the surface shapes the ``Outcome`` into its own wire format

A step that refuses raises a ``GatewayError`` and no later step runs: no provider
call, no ledger entry for a call refused before the provider-call step. Nothing here
knows HTTP: a surface (the Gateway API today; gateways and channels later) parses
its request into a ``GatewayCall``, hands over an ``Upstream`` and shapes the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..endpoints import EndpointView
from . import cap, fallbacks, guard_input, input_schema, output, prompt
from .call import Completion, GatewayCall, History, Outcome, Upstream
from .guardrails import GuardrailMetrics

__all__ = ["PipelineEnv", "rate_limit", "record_turn", "run", "session_history"]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PipelineEnv:
    """What the steps need from the running edge (built by the surface, per call or once)."""

    #: Counts fired guardrails (``EdgeMetrics``); None: not counted.
    metrics: GuardrailMetrics | None
    #: The catalog's largest output of a model (``PriceBook.output_limit``).
    output_limit: Callable[[str], int | None]
    #: Most messages one call may send (``EdgeSettings.max_messages``).
    max_messages: int


async def rate_limit(call: GatewayCall, endpoint: EndpointView) -> None:
    """Slot for seed 001's rate limit step (issue 14, helper 14r): per key, project and
    endpoint limits (``edge.pipeline.ratelimit``), raising ``RateLimited`` (429 with
    ``Retry-After``). A no-op until it is filled."""


async def session_history(call: GatewayCall, endpoint: EndpointView) -> History:
    """Slot for the session step of prompt apply (issue 14, helper 14s,
    ``edge.pipeline.history``): opens or resumes ``call.session_id`` and returns the turns
    to prepend and the meta to report. Until it is filled: no history."""
    return History()


async def record_turn(
    call: GatewayCall, endpoint: EndpointView, history: History, content: str | None
) -> None:
    """Slot for the log step's transcript (issue 14, helper 14s): stores the call's turn
    before its response reaches the client. A no-op until it is filled."""


async def run(
    call: GatewayCall, endpoint: EndpointView, env: PipelineEnv, upstream: Upstream[S]
) -> Outcome[S]:
    """Run ``call`` through ``endpoint``'s pipeline (module docstring for the order)."""
    await rate_limit(call, endpoint)
    cap.check_request_tokens(call, endpoint, env.output_limit)
    checked = guard_input.guard_input(call, endpoint, env.metrics)
    input_schema.check_input_schema(call, endpoint)
    history = await session_history(checked, endpoint)
    sent = prompt.apply(checked, endpoint, history.messages, max_messages=env.max_messages)
    models = (endpoint.model, *endpoint.fallbacks)
    if sent.stream:
        streamed, model, prior = await fallbacks.call_with_fallbacks(
            models,
            lambda m: upstream.stream(m, sent.body(m), output.output_stream(endpoint, env.metrics)),
        )
        return Outcome(streamed, model, prior, history)
    answer, model, prior = await fallbacks.call_with_fallbacks(
        models, lambda m: upstream.complete(m, sent.body(m))
    )
    completion: Completion = output.check_completion(answer, endpoint, env.metrics)
    await record_turn(checked, endpoint, history, completion.content)
    return Outcome(completion, model, prior, history)
