"""Seed 001's pipeline, declared once: ``run`` is the whole order, one line a step.

    auth            the surface's (a key of the project, with the scope it needs)
    rate limit      the surface's, before it reads the body (``edge.pipeline.limits_step``:
                    key, project and endpoint limits, 429 with ``Retry-After``); its
                    ``Admission`` rides in the ``Upstream``, whose attempts reserve the
                    worst case on the token limits and settle it to the usage
    budget          the per-request token cap (``cap``), then the monthly budget
                    (``Upstream.check_budget`` with ``cap.estimated_body``: refused here,
                    before the guardrails, reserving nothing); ``Proxy.forward`` admits
                    the exact body it sends before any provider is called
    guardrails      on the input (``guard_input``)
    input schema    ``variables`` against ``input_schema`` (``input_schema``)
    prompt apply    the call's own messages (rendered ``prompt_template``, then the
                    caller's: ``prompt.own_messages``), the session and its history fitted
                    to the context window (``history.open_for_call``), the system prompt
                    first (``prompt.apply``)
    provider call   with the router's failover, then the endpoint's ``fallbacks``
                    (``fallbacks``), each attempt through the surface's ``Upstream``
    output          output schema, then output guardrails (``output``; on a stream, the
                    same checks ride along as the stream's shaper)
    log             the usage event is the router's (published before a unary answer);
                    the session's turns are stored before the answer reaches the client
                    (``history.SessionRecorder``: unary here, streams before ``[DONE]``)
    response        the surface shapes the ``Outcome`` into its own wire format

A step that refuses raises a ``GatewayError`` and no later step runs: no provider
call, no ledger entry for a call refused before the provider-call step. Nothing here
knows HTTP: a surface (the Gateway API today; gateways and channels later) parses
its request into a ``GatewayCall``, hands over an ``Upstream`` and shapes the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..endpoints import EndpointView
from ..sessions_client import SessionsClient
from . import cap, fallbacks, guard_input, history, input_schema, output, prompt
from .call import GatewayCall, Outcome, StreamShaper, Upstream
from .guardrails import GuardrailMetrics

__all__ = ["CatalogLimits", "PipelineEnv", "run"]

S = TypeVar("S")


class CatalogLimits(Protocol):
    """The catalog's limits of a model (``edge.pricebook.PriceBook``)."""

    def output_limit(self, model: str) -> int | None: ...

    def limits(self, model: str) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class PipelineEnv:
    """What the steps need from the running edge (built by the surface)."""

    #: Counts fired guardrails (``EdgeMetrics``); None: not counted.
    metrics: GuardrailMetrics | None
    #: Models' output limits and context windows (``PriceBook``).
    catalog: CatalogLimits
    #: Most messages one call may send (``EdgeSettings.max_messages``).
    max_messages: int
    #: Session history (asked only for endpoints with sessions on).
    sessions: SessionsClient


async def _session(
    call: GatewayCall, endpoint: EndpointView, env: PipelineEnv, own: list[Mapping[str, Any]]
) -> tuple[history.Session | None, list[Mapping[str, Any]], history.SessionRecorder | None]:
    return await history.open_for_call(
        env.sessions,
        endpoint=endpoint,
        project_id=call.project_id,
        session_id=call.session_id,
        request_id=call.request_id,
        own=own,
        limits=env.catalog.limits(endpoint.model),
        max_messages=env.max_messages,
    )


def _shaper(
    endpoint: EndpointView, env: PipelineEnv, recorder: history.SessionRecorder | None
) -> StreamShaper | None:
    """A stream's shaper: output checks (and the session's record), the recorder alone, or none."""
    if output.needs_checks(endpoint):
        record = None if recorder is None else recorder.store
        return output.OutputStream(endpoint, env.metrics, record=record)
    return recorder


async def run(
    call: GatewayCall, endpoint: EndpointView, env: PipelineEnv, upstream: Upstream[S]
) -> Outcome[S]:
    """Run ``call`` through ``endpoint``'s pipeline (module docstring for the order)."""
    cap.check_request_tokens(call, endpoint, env.catalog.output_limit)
    await upstream.check_budget(endpoint.model, cap.estimated_body(call, endpoint))
    checked = guard_input.guard_input(call, endpoint, env.metrics)
    input_schema.check_input_schema(call, endpoint)
    own = prompt.own_messages(checked, endpoint)
    session, messages, recorder = await _session(checked, endpoint, env, own)
    sent = prompt.apply(checked, endpoint, messages, max_messages=env.max_messages)
    meta = {} if session is None else session.meta()
    sid = None if session is None else session.session_id
    models = (endpoint.model, *endpoint.fallbacks)
    if sent.stream:
        streamed, model, prior = await fallbacks.call_with_fallbacks(
            models, lambda m: upstream.stream(m, sent.body(m), _shaper(endpoint, env, recorder))
        )
        return Outcome(streamed, model, prior, meta, sid)
    answer, model, prior = await fallbacks.call_with_fallbacks(
        models, lambda m: upstream.complete(m, sent.body(m))
    )
    completion = output.check_completion(answer, endpoint, env.metrics)
    if recorder is not None:
        await recorder.store(completion.content or "")
    return Outcome(completion, model, prior, meta, sid)
