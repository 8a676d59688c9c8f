"""The gRPC servicer: decode the proto, call ``RouterService``, encode the answer.

Every ``GatewayError`` that ends a call becomes a gRPC status with the
``ErrorDetail`` in the binary trailer ``x-error-detail-bin`` (the edge reads
it with ``gateway_common.errors.from_detail``).

``StreamComplete`` sends what is ready together as one message. The service's
event generator runs in a pump task that feeds a bounded queue; the servicer
waits for one event, takes every event already queued with it (in practice
what one read from the provider produced), and writes each run of consecutive
chunks as one ``ChunkBatch`` (at most ``_BATCH_BYTES`` each); route, usage and
error events stay messages of their own, in order. The queue holds at most
``_QUEUE_EVENTS``, so a slow client stops the pump, and the pump stops reading
the provider. The servicer writes with ``context.write`` rather than yielding,
so a cancelled call always unwinds through our code: it cancels the pump, which
closes the generator and so the provider stream, and waits for that. The
chunks of each message count as delivered (``router.delivered.Delivered``)
once its ``context.write`` returned: a cancelled stream is billed by those,
never by chunks still in the queue. An
exception the generator raises reaches the servicer after the events before
it, and a ``GatewayError`` aborts the call with the trailer as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

import grpc
import orjson

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.catalog import ModelEntry
from gateway_common.errors import GatewayError, InvalidRequest, to_detail
from gateway_common.events import SkuQuantity
from gateway_common.telemetry import REQUEST_ID, content

from .delivered import Delivered
from .failover import RouteInfo
from .generation import GenerationContext
from .providers.base import Operation, Usage
from .service import Call, RouterService, StreamEvent
from .usage import Payer

__all__ = ["ERROR_DETAIL_KEY", "RouterServicer"]

log = logging.getLogger(__name__)

#: Binary trailer that carries the serialized ``ErrorDetail``.
ERROR_DETAIL_KEY = "x-error-detail-bin"
#: Stream events the pump may queue ahead of the client (its backpressure bound).
_QUEUE_EVENTS = 64
#: A ``ChunkBatch`` is closed once it holds this many bytes (well under gRPC's 4 MiB limit).
_BATCH_BYTES = 1 << 20

_OPERATIONS: dict[int, Operation] = {
    router_pb2.OPERATION_CHAT_COMPLETIONS: "chat.completions",
    router_pb2.OPERATION_EMBEDDINGS: "embeddings",
    router_pb2.OPERATION_RESPONSES: "responses",
}


class RouterServicer(router_pb2_grpc.RouterServicer):
    """``gateway.router.v1.Router`` over a ``RouterService``."""

    def __init__(self, service: RouterService) -> None:
        self._service = service

    async def Complete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CompleteResponse:
        started = time.perf_counter()
        try:
            completion, info = await self._service.complete(
                decode(request), deadline=_deadline(context)
            )
        except GatewayError as err:
            await _abort(context, err)
        return router_pb2.CompleteResponse(
            body=completion.body,
            route=_route_pb(info, started),
            usage=_usage_pb(completion.usage) if completion.usage else None,
        )

    async def StreamComplete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> None:
        started = time.perf_counter()
        queue: asyncio.Queue[StreamEvent | _End] = asyncio.Queue(_QUEUE_EVENTS)
        pump: asyncio.Task[None] | None = None
        delivered = Delivered()
        try:
            events = self._service.stream(
                decode(request), deadline=_deadline(context), delivered=delivered
            )
            pump = asyncio.create_task(_pump(events, queue))
            end: _End | None = None
            while end is None:
                ready, end = await _ready(queue)
                for message in _messages(ready, started):
                    await context.write(message)
                    if message.HasField("chunks"):
                        delivered.add(message.chunks.chunks)
            if end.error is not None:
                raise end.error
        except GatewayError as err:
            await _abort(context, err)
        finally:
            if pump is not None and not pump.done():
                pump.cancel()  # the client went away or a write failed: close the stream
                await asyncio.wait((pump,))

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        models = self._service.catalog.table.catalog.models
        return router_pb2.ListModelsResponse(
            models=[_model_pb(name, entry) for name, entry in models.items()]
        )


def decode(request: router_pb2.CompleteRequest) -> Call:
    """The domain call for a request; raises ``InvalidRequest`` for a malformed one."""
    operation = _OPERATIONS.get(request.operation)
    if operation is None:
        raise InvalidRequest("The operation is not set or not supported")
    try:
        body: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = request.model or body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if log.isEnabledFor(logging.DEBUG):
        # The body's text only with GATEWAY_LOG_PROMPTS=true; its length otherwise.
        log.debug(
            "%s call for %s: %s", operation, model, content(request.body.decode(errors="replace"))
        )
    payer = Payer(
        request_id=request.request_id or REQUEST_ID.get(),
        project_id=request.project_id,
        api_key_id=request.api_key_id,
        byok=bool(request.provider_key) or request.own_endpoint,
        budget_lease_id=request.budget_lease_id,
        endpoint=request.endpoint,
        endpoint_id=request.endpoint_id,
        sku_usage=tuple(SkuQuantity(sku=s.sku, quantity=s.quantity) for s in request.sku_usage),
        metadata=tuple(sorted(request.metadata.items())),
        own_endpoint=request.own_endpoint,
    )
    return Call(
        operation,
        model,
        body,
        payer,
        provider_key=request.provider_key or None,
        credentials={c.provider: c.api_key for c in request.credentials if c.api_key},
        base_urls={c.provider: c.base_url for c in request.credentials if c.api_key and c.base_url},
        generation_context=request.include_generation_context,
        own_endpoint=request.own_endpoint,
    )


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def _abort(context: grpc.aio.ServicerContext, err: GatewayError) -> NoReturn:
    log.info("call failed: %s (%s)", err.code, err.message)
    await context.abort(
        err.grpc_code,
        err.message,
        trailing_metadata=((ERROR_DETAIL_KEY, to_detail(err).SerializeToString()),),
    )
    raise AssertionError("unreachable: context.abort raises")


def _route_pb(info: RouteInfo, started: float) -> router_pb2.RouteInfo:
    """``info`` as sent now, for a call that reached the servicer at ``started``."""
    return router_pb2.RouteInfo(
        provider=info.provider,
        deployment=info.deployment,
        attempts=info.attempts,
        model=info.model,
        provider_model=info.provider_model,
        upstream_ms=info.upstream_ms,
        router_ms=(time.perf_counter() - started) * 1000,
        publish_ms=info.publish_ms,
    )


def _usage_pb(usage: Usage) -> types_pb2.Usage:
    return types_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


@dataclass(frozen=True, slots=True)
class _End:
    """The pump's last queue item: the stream ended, by raising ``error`` if it is set."""

    error: Exception | asyncio.CancelledError | None = None


async def _pump(
    events: AsyncGenerator[StreamEvent, None], queue: asyncio.Queue[StreamEvent | _End]
) -> None:
    """Queue every event of ``events``, then an ``_End``; ``events`` is closed however it ends.

    Runs as its own task; ``StreamComplete`` cancels it when the call ends early.
    """
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                await queue.put(event)
    except (Exception, asyncio.CancelledError) as exc:
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
            raise  # cancelled by StreamComplete, which no longer reads the queue
        # Handed over, so the servicer raises it after writing the events before it.
        await queue.put(_End(exc))
    else:
        await queue.put(_End())


def _chunk(event: StreamEvent) -> bytes | None:
    """The chunk bytes ``event`` carries to the client, or None if it is not a chunk."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, GenerationContext):
        return event.chunk
    return None


async def _ready(
    queue: asyncio.Queue[StreamEvent | _End],
) -> tuple[list[StreamEvent], _End | None]:
    """The next event and every event queued behind it; the ``_End`` if it was among them."""
    ready: list[StreamEvent] = []
    item = await queue.get()
    while not isinstance(item, _End):
        ready.append(item)
        if queue.empty():
            return ready, None
        item = queue.get_nowait()
    return ready, item


def _messages(events: Sequence[StreamEvent], started: float) -> Iterator[router_pb2.StreamEvent]:
    """``events`` as stream messages, in order: each run of consecutive chunks is one batch.

    ``started``: when the call reached the servicer (the route event's ``router_ms``).
    """
    batch: list[bytes] = []
    size = 0
    for event in events:
        chunk = _chunk(event)
        if batch and (chunk is None or size + len(chunk) > _BATCH_BYTES):
            yield router_pb2.StreamEvent(chunks=router_pb2.ChunkBatch(chunks=batch))
            batch, size = [], 0
        if chunk is None:
            yield _event_pb(event, started)
        else:
            batch.append(chunk)
            size += len(chunk)
    if batch:
        yield router_pb2.StreamEvent(chunks=router_pb2.ChunkBatch(chunks=batch))


def _event_pb(event: StreamEvent, started: float) -> router_pb2.StreamEvent:
    """A stream event that is not a chunk as its message."""
    match event:
        case RouteInfo():
            return router_pb2.StreamEvent(route=_route_pb(event, started))
        case Usage():
            return router_pb2.StreamEvent(usage=_usage_pb(event))
        case GatewayError():
            return router_pb2.StreamEvent(error=to_detail(event))
    raise TypeError(f"not a stream event: {type(event).__name__}")


def _price(value: Decimal) -> str:
    return format(value, "f")  # never exponent notation: 1.5E-7 -> 0.00000015


def _model_pb(name: str, entry: ModelEntry) -> router_pb2.ModelInfo:
    prices = entry.prices
    return router_pb2.ModelInfo(
        id=name,
        owned_by=entry.owned_by,
        provider=entry.deployments[0].provider,
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens,
        speed_tps=entry.speed_tps,
        best_for=entry.best_for,
        input_price_per_token=_price(prices.input),
        output_price_per_token=_price(prices.output),
        cached_input_price_per_token=_price(
            prices.input if prices.cached_input is None else prices.cached_input
        ),
        capabilities=list(entry.capabilities),
        aliases=list(entry.aliases),
    )
