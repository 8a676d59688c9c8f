"""Usage events: one ``UsageRecorded`` per provider call that reported usage.

The router publishes to ``usage.recorded.v1`` with ``Nats-Msg-Id`` = event id
and awaits the JetStream ack before it answers the caller (unary response or
final stream event), so a call the client got is a call billing will see. A
publish whose ack does not come (lost on the way, NATS unreachable) is retried
with the same ``Nats-Msg-Id`` for the retry window (``ROUTER_USAGE_PUBLISH_WINDOW_S``);
a re-publish within the stream's duplicate window is dropped by JetStream.

Past the window (NATS unreachable longer), the event goes to the local outbox
(``router.outbox``) and the call is answered; until the outbox is replayed,
new events go there at once instead of waiting out the window again. The
replay (``replay_forever``, the task ``start_replay`` runs) publishes each with
its own ``Nats-Msg-Id``. So no answered call goes unbilled and none is billed
twice. Without an outbox the call fails with ``ServiceUnavailable`` (503) and is
not billed.

At shutdown, once no call can record any more, ``flush`` stops the replay task
only after a last pass: it replays until the outbox is empty or its time is up
(NATS still unreachable) and reports how many events are left; those stay in the
file and are replayed by the next router started on it (a restarted container
in the same pod, or the same claim with ``components/durable-outbox``).

A stream cut before the provider reported usage is billed for what it
delivered, estimated (``router.delivered``): status ``error`` when the
provider's stream failed mid-way, ``cancelled`` when the caller went away (the
edge died or its client disconnected). Its event is published like any other,
retried with its event id and then kept in the outbox: no caller waits on it,
and nobody else would ever bill it. Otherwise usage is never invented: a call
whose usage is unknown (a provider that reports none) publishes nothing and is
counted in ``router_usage_unrecorded_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, Protocol

import nats.errors
from nats.js import JetStreamContext

from gateway_common import subjects, telemetry
from gateway_common.errors import ServiceUnavailable
from gateway_common.events import SkuQuantity, TokenUsage, UsageRecorded

from .failover import RouteInfo
from .metrics import RouterMetrics
from .outbox import UsageOutbox
from .providers.base import Operation, Usage

__all__ = ["Payer", "Status", "UsagePublisher", "UsageSink", "usage_event"]

log = logging.getLogger(__name__)

Status = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a call is billed to, as the edge stated it; ``byok`` when the caller brought the key.

    ``budget_lease_id`` is the billing lease the edge admitted the call under
    and ``endpoint`` / ``endpoint_id`` the project endpoint it came through (""
    for none); ``sku_usage`` the extra catalog SKUs the edge consumed (a gateway's
    retrieval and routing) and ``metadata`` the client's request metadata; all are copied
    onto the usage event. ``own_endpoint``: served on the project's own endpoint (only
    ``sku_usage`` priced).
    """

    request_id: str
    project_id: str
    api_key_id: str
    byok: bool
    budget_lease_id: str = ""
    endpoint: str = ""
    endpoint_id: str = ""
    sku_usage: tuple[SkuQuantity, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    own_endpoint: bool = False


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
        sku_usage=payer.sku_usage,
        metadata=dict(payer.metadata),
        own_endpoint=payer.own_endpoint,
    )


#: Pause between two publish attempts of one event, and between replay passes that failed.
_RETRY_PAUSE_S = 0.25
#: How long an idle replayer sleeps before it looks at the outbox again (it is woken on a put).
_IDLE_S = 1.0
_REPLAY_BATCH = 100


class UsagePublisher:
    """``UsageSink`` over JetStream: publish, retry, wait for the stream's ack; else spool.

    Without ``outbox`` a publish that no ack answered within ``retry_window_s``
    raises ``ServiceUnavailable``: the caller must not be served a call that
    billing will never see. With it, the event is kept there (see the module
    docstring): ``start_replay`` runs its replay task, ``flush`` ends it at shutdown.
    """

    def __init__(
        self,
        js: JetStreamContext,
        metrics: RouterMetrics,
        *,
        ack_timeout_s: float = 2.0,
        retry_window_s: float = 5.0,
        outbox: UsageOutbox | None = None,
    ) -> None:
        self._js = js
        self._metrics = metrics
        self._ack_timeout_s = ack_timeout_s
        self._retry_window_s = retry_window_s
        self._outbox = outbox
        self._outage = False  # a publish ran out of its window; cleared once the outbox is empty
        self._wake = asyncio.Event()
        self._closing = False  # set by flush: the replay ends once the outbox is empty
        self._replayer: asyncio.Task[None] | None = None

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
        data = event.to_bytes()
        if self._outage and self._outbox is not None:
            await self._spool(event.event_id, data)
            return event
        try:
            await self._publish(event.event_id, data, window_s=self._retry_window_s)
        except nats.errors.Error as exc:
            log.error("usage event %s not acknowledged: %s", event.event_id, exc)
            if self._outbox is None:
                self._metrics.usage_unrecorded.labels("publish_failed").inc()
                raise ServiceUnavailable(
                    "Usage could not be recorded; the call was not billed"
                ) from exc
            self._outage = True
            await self._spool(event.event_id, data)
        return event

    def start_replay(self) -> None:
        """Run ``replay_forever`` as this publisher's task; ``flush`` (or ``aclose``) ends it."""
        self._replayer = asyncio.create_task(self.replay_forever(), name="usage-outbox-replay")

    async def replay_forever(self) -> None:
        """Publish the outbox's events (an earlier run's too), oldest first; a task's body.

        Runs until cancelled, or, once ``flush`` asked it to close, until the outbox is empty.
        """
        assert self._outbox is not None, "replay needs an outbox"
        while True:
            replayed = await self._replay_batch(self._outbox)
            if replayed is None:  # NATS did not take one: try again shortly
                await asyncio.sleep(_RETRY_PAUSE_S)
            elif replayed == 0:
                self._outage = False
                if self._closing:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _IDLE_S)

    async def flush(self, *, timeout_s: float) -> int:
        """Shutdown's last replay: publish what the outbox holds for up to ``timeout_s``.

        The caller has stopped every call that could record usage. The replay task
        (started here if it was not) is told to end once the outbox is empty, not
        cancelled with events pending; only at ``timeout_s`` is it cancelled, between
        two events or in a publish whose event stays in the outbox (a later replay of
        it is dropped by its ``Nats-Msg-Id``). Returns the number of events left in
        the outbox, logged: they are billed when a router replays the file again.
        """
        assert self._outbox is not None, "flush needs an outbox"
        self._closing = True
        self._wake.set()
        if self._replayer is None:
            self.start_replay()
        assert self._replayer is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._replayer, max(timeout_s, 0.0))
        left = await self._outbox.count()
        if left:
            log.error(
                "%d usage events left in the outbox %s: NATS did not take them within "
                "%.0f s; a router started on this file replays them",
                left,
                self._outbox.path,
                timeout_s,
            )
        else:
            log.info("usage outbox flushed: no event left")
        return left

    async def aclose(self) -> None:
        """Cancel the replay task if it still runs (``flush`` did not end it)."""
        if self._replayer is not None and not self._replayer.done():
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer

    async def _replay_batch(self, outbox: UsageOutbox) -> int | None:
        """Publish up to one batch, oldest first, each removed after its ack; how many
        were replayed (0: the outbox is empty), ``None`` when a publish failed."""
        batch = await outbox.oldest(_REPLAY_BATCH)
        for event_id, data in batch:
            try:
                await self._publish(event_id, data, window_s=0.0)
            except nats.errors.Error:
                return None
            await outbox.remove(event_id)
            self._metrics.usage_outbox.labels("replayed").inc()
        if batch:
            log.info("replayed %d usage events from the outbox", len(batch))
        return len(batch)

    async def _publish(self, event_id: str, data: bytes, *, window_s: float) -> None:
        """Publish until acknowledged, always with ``event_id`` as ``Nats-Msg-Id``; after
        ``window_s`` (plus one ack timeout) raise the last error."""
        deadline = time.monotonic() + window_s
        while True:
            try:
                await self._js.publish(
                    subjects.USAGE_RECORDED,
                    data,
                    timeout=self._ack_timeout_s,
                    # traceparent: billing's handling joins this call's trace.
                    headers=telemetry.inject({"Nats-Msg-Id": event_id}),
                )
                return
            except nats.errors.Error:
                if time.monotonic() + _RETRY_PAUSE_S >= deadline:
                    raise
                self._metrics.usage_publish_retries.inc()
            await asyncio.sleep(_RETRY_PAUSE_S)

    async def _spool(self, event_id: str, data: bytes) -> None:
        assert self._outbox is not None
        try:
            await self._outbox.put(event_id, data)
        except sqlite3.Error as exc:
            self._metrics.usage_unrecorded.labels("publish_failed").inc()
            log.error("usage event %s neither acknowledged nor kept: %s", event_id, exc)
            raise ServiceUnavailable(
                "Usage could not be recorded; the call was not billed"
            ) from exc
        self._metrics.usage_outbox.labels("spooled").inc()
        self._wake.set()

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
