"""The gRPC servicer: decode the proto, call ``RouterService``, encode the answer.

Every ``GatewayError`` that ends a call becomes a gRPC status with the
``ErrorDetail`` in the binary trailer ``x-error-detail-bin`` (the edge reads
it with ``gateway_common.errors.from_detail``). ``StreamComplete`` writes with
``context.write`` rather than yielding, so a cancelled call always unwinds
through our code and closes the provider stream at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from decimal import Decimal
from typing import Any, NoReturn

import grpc
import orjson

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.catalog import ModelEntry
from gateway_common.errors import GatewayError, InvalidRequest, to_detail
from gateway_common.telemetry import REQUEST_ID

from .failover import RouteInfo
from .generation import GenerationContext
from .providers.base import Operation, Usage
from .service import Call, RouterService, StreamEvent
from .usage import Payer

__all__ = ["ERROR_DETAIL_KEY", "RouterServicer"]

log = logging.getLogger(__name__)

#: Binary trailer that carries the serialized ``ErrorDetail``.
ERROR_DETAIL_KEY = "x-error-detail-bin"

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
        try:
            completion, info = await self._service.complete(
                decode(request), deadline=_deadline(context)
            )
        except GatewayError as err:
            await _abort(context, err)
        return router_pb2.CompleteResponse(
            body=completion.body,
            route=_route_pb(info),
            usage=_usage_pb(completion.usage) if completion.usage else None,
        )

    async def StreamComplete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            events = self._service.stream(decode(request), deadline=_deadline(context))
            async with contextlib.aclosing(events):
                async for event in events:
                    await context.write(_event_pb(event))
        except GatewayError as err:
            await _abort(context, err)

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
    payer = Payer(
        request_id=request.request_id or REQUEST_ID.get(),
        project_id=request.project_id,
        api_key_id=request.api_key_id,
        byok=bool(request.provider_key),
        budget_lease_id=request.budget_lease_id,
        endpoint=request.endpoint,
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


def _route_pb(info: RouteInfo) -> router_pb2.RouteInfo:
    return router_pb2.RouteInfo(
        provider=info.provider,
        deployment=info.deployment,
        attempts=info.attempts,
        model=info.model,
        provider_model=info.provider_model,
        upstream_ms=info.upstream_ms,
    )


def _usage_pb(usage: Usage) -> types_pb2.Usage:
    return types_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def _event_pb(event: StreamEvent) -> router_pb2.StreamEvent:
    match event:
        case bytes():
            return router_pb2.StreamEvent(chunk=event)
        case GenerationContext():
            return router_pb2.StreamEvent(chunk=event.chunk)
        case RouteInfo():
            return router_pb2.StreamEvent(route=_route_pb(event))
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
        input_price_per_token=_price(prices.input),
        output_price_per_token=_price(prices.output),
        cached_input_price_per_token=_price(
            prices.input if prices.cached_input is None else prices.cached_input
        ),
        capabilities=list(entry.capabilities),
        aliases=list(entry.aliases),
    )
