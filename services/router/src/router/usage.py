"""Usage events: one ``UsageRecorded`` per provider call that reported usage.

The router publishes to ``usage.recorded.v1`` with ``Nats-Msg-Id`` = event id
and awaits the JetStream ack before it answers the caller (unary response or
final stream event), so a call the client got is a call billing will see. A
re-publish within the stream's duplicate window is dropped by JetStream.

A stream that fails mid-way before the provider reported usage is billed for
what it delivered, estimated (``router.delivered``), with status ``error``.
Otherwise usage is never invented: a call whose usage is unknown (a stream
cancelled before the provider reported it, a provider that reports none)
publishes nothing and is counted in ``router_usage_unrecorded_total``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import nats.errors
from nats.js import JetStreamContext

from gateway_common import subjects, telemetry
from gateway_common.errors import ServiceUnavailable
from gateway_common.events import TokenUsage, UsageRecorded

from .failover import RouteInfo
from .metrics import RouterMetrics
from .providers.base import Operation, Usage

__all__ = ["Payer", "Status", "UsagePublisher", "UsageSink", "usage_event"]

log = logging.getLogger(__name__)

Status = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a call is billed to, as the edge stated it; ``byok`` when the caller brought the key.

    ``budget_lease_id`` is the billing lease the edge admitted the call under
    and ``endpoint`` / ``endpoint_id`` the project endpoint it came through (""
    for none); all are copied onto the usage event.
    """

    request_id: str
    project_id: str
    api_key_id: str
    byok: bool
    budget_lease_id: str = ""
    endpoint: str = ""
    endpoint_id: str = ""


class UsageSink(Protocol):
    """Where the router reports a finished provider call."""

    async def record(
        self,
        payer: Payer,
        operation: Operation,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> UsageRecorded | None:
        """Durably record the call's usage; the event recorded, ``None`` when there was none
        (usage unknown)."""
        ...


def usage_event(
    payer: Payer, operation: Operation, route: RouteInfo, usage: Usage, *, status: Status
) -> UsageRecorded:
    """The event for one provider call."""
    return UsageRecorded(
        request_id=payer.request_id,
        project_id=payer.project_id,
        api_key_id=payer.api_key_id,
        operation=operation,
        model=route.model,
        provider=route.provider,
        deployment=route.deployment,
        usage=TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        byok=payer.byok,
        status=status,
        budget_lease_id=payer.budget_lease_id,
        endpoint=payer.endpoint,
        endpoint_id=payer.endpoint_id,
    )


class UsagePublisher:
    """``UsageSink`` over JetStream: publish, then wait for the stream's ack.

    A failed publish raises ``ServiceUnavailable``: the caller must not be
    served a call that billing will never see.
    """

    def __init__(
        self, js: JetStreamContext, metrics: RouterMetrics, *, ack_timeout_s: float = 5.0
    ) -> None:
        self._js = js
        self._metrics = metrics
        self._ack_timeout_s = ack_timeout_s

    async def record(
        self,
        payer: Payer,
        operation: Operation,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> UsageRecorded | None:
        self._count(route, usage, status)
        if usage is None:
            self._metrics.usage_unrecorded.labels(
                "not_reported" if status == "ok" else status
            ).inc()
            log.warning("no usage reported for a %s call on %s", status, route.deployment)
            return None
        event = usage_event(payer, operation, route, usage, status=status)
        try:
            await self._js.publish(
                subjects.USAGE_RECORDED,
                event.to_bytes(),
                timeout=self._ack_timeout_s,
                # traceparent: billing's handling joins this call's trace.
                headers=telemetry.inject({"Nats-Msg-Id": event.event_id}),
            )
        except nats.errors.Error as exc:
            self._metrics.usage_unrecorded.labels("publish_failed").inc()
            log.error("usage event %s not acknowledged: %s", event.event_id, exc)
            raise ServiceUnavailable(
                "Usage could not be recorded; the call was not billed"
            ) from exc
        return event

    def _count(self, route: RouteInfo, usage: Usage | None, status: Status) -> None:
        """Requests and tokens by (capped) model and provider."""
        metrics = self._metrics
        model = metrics.model_label(route.model)
        metrics.child(metrics.requests, model, route.provider, status).inc()
        if usage is not None:
            metrics.child(metrics.tokens, model, route.provider, "input").inc(usage.prompt_tokens)
            metrics.child(metrics.tokens, model, route.provider, "output").inc(
                usage.completion_tokens
            )
