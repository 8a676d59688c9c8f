"""The edge's client of the router's gRPC service, and the one place gRPC errors are mapped.

Every call carries ``x-request-id`` metadata and the edge's request deadline
(``GATEWAY_REQUEST_TIMEOUT_S``). A failed call raises a ``GatewayError``:

    status with an ``x-error-detail-bin`` trailer  -> ``errors.from_detail(trailer)``
    DEADLINE_EXCEEDED without a trailer           -> ProviderTimeout (504)
    anything else without a trailer               -> ServiceUnavailable (503): the router
                                                     is down or unreachable

``stream`` is an async generator: closing it (``aclose``, or cancellation of
the task iterating it) cancels the gRPC call, which the router sees as
``CancelledError`` and turns into closing the provider stream. Its chunks come
as ``chunks`` events, each a ``ChunkBatch`` of the chunks the router had ready
together; a ``chunk`` event (one chunk, what older routers send) is handed on
as a batch of one, so callers see one shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2, router_pb2_grpc
from gateway_common.errors import (
    GatewayError,
    ProviderTimeout,
    ServiceUnavailable,
    from_detail,
)
from gateway_common.grpc import REQUEST_ID_KEY

from .projects import ManagedCredential

__all__ = ["ERROR_DETAIL_KEY", "CallContext", "Completion", "RouterClient", "map_rpc_error"]

log = logging.getLogger(__name__)

#: Binary trailer carrying a serialized ``gateway.common.v1.ErrorDetail``.
ERROR_DETAIL_KEY = "x-error-detail-bin"
_LIST_MODELS_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling: rides on every router call as typed fields and metadata.

    ``provider_key`` is the caller's own provider key (BYOK, ``X-Provider-Key``):
    it goes into ``CompleteRequest.provider_key`` and nowhere else (not in repr).
    ``credentials`` are the project's managed keys, opened for this call only,
    each with its custom base URL if any: same rule (``CompleteRequest.credentials``).
    ``budget_lease_id`` is the budget lease the call was admitted under ("" when
    none applies); the router copies it onto the call's usage event. ``endpoint``
    is the Gateway API endpoint (slug) the call came through, "" for ``/v1``; it
    also lands on the usage event (usage by endpoint), with its ``endpoint_id``
    (billing counts an endpoint's monthly spend by id, for its budget). ``sku_usage``:
    extra catalog SKUs the edge consumed (a gateway's retrieval and routing), sku -> units;
    ``metadata``: the client's request metadata, kept on the usage event.
    ``own_endpoint``: serve ``model`` verbatim on ``credentials``' one credential (a
    gateway's own endpoint, ``CompleteRequest.own_endpoint``).
    """

    request_id: str
    project_id: str
    api_key_id: str
    provider_key: str | None = field(default=None, repr=False)
    credentials: tuple[ManagedCredential, ...] = field(default=(), repr=False)
    include_generation_context: bool = True
    budget_lease_id: str = ""
    endpoint: str = ""
    endpoint_id: str = ""
    sku_usage: tuple[tuple[str, int], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    own_endpoint: bool = False


class Completion(NamedTuple):
    """A unary call's result: the OpenAI response body as the router sent it."""

    body: bytes
    route: router_pb2.RouteInfo
    usage: types_pb2.Usage


def map_rpc_error(exc: grpc.aio.AioRpcError) -> GatewayError:
    """The ``GatewayError`` a failed router call stands for (see module docstring)."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_DETAIL_KEY and isinstance(value, bytes):
            detail = types_pb2.ErrorDetail()
            detail.ParseFromString(value)
            return from_detail(detail)
    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ProviderTimeout("The request timed out.")
    log.warning("router call failed: %s %s", exc.code().name, exc.details())
    return ServiceUnavailable("The gateway's router is unavailable. Please retry.")


class RouterClient:
    """Typed calls to ``gateway.router.v1.Router`` over one long-lived channel."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float) -> None:
        self._stub = router_pb2_grpc.RouterStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._timeout = timeout_s

    @staticmethod
    def _request(
        op: router_pb2.Operation.ValueType, model: str, body: bytes, ctx: CallContext
    ) -> router_pb2.CompleteRequest:
        return router_pb2.CompleteRequest(
            operation=op,
            model=model,
            body=body,
            request_id=ctx.request_id,
            project_id=ctx.project_id,
            api_key_id=ctx.api_key_id,
            provider_key=ctx.provider_key or "",
            credentials=[
                router_pb2.ProviderCredential(
                    provider=cred.provider, api_key=cred.api_key, base_url=cred.base_url
                )
                for cred in ctx.credentials
            ],
            include_generation_context=ctx.include_generation_context,
            budget_lease_id=ctx.budget_lease_id,
            endpoint=ctx.endpoint,
            endpoint_id=ctx.endpoint_id,
            sku_usage=[router_pb2.SkuUsage(sku=s, quantity=q) for s, q in ctx.sku_usage],
            own_endpoint=ctx.own_endpoint,
            metadata=dict(ctx.metadata),
        )

    async def complete(
        self, op: router_pb2.Operation.ValueType, model: str, body: bytes, ctx: CallContext
    ) -> Completion:
        """One unary call; raises ``GatewayError`` on failure."""
        try:
            resp = await self._stub.Complete(
                self._request(op, model, body, ctx),
                timeout=self._timeout,
                metadata=((REQUEST_ID_KEY, ctx.request_id),),
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc
        return Completion(resp.body, resp.route, resp.usage)

    async def stream(
        self, op: router_pb2.Operation.ValueType, model: str, body: bytes, ctx: CallContext
    ) -> AsyncGenerator[router_pb2.StreamEvent, None]:
        """The call's events in order, chunks as ``chunks`` batches; raises ``GatewayError``
        if the call fails.

        Close the generator when done with it: that cancels the call if it is
        still running.
        """
        call = self._stub.StreamComplete(
            self._request(op, model, body, ctx),
            timeout=self._timeout,
            metadata=((REQUEST_ID_KEY, ctx.request_id),),
        )
        try:
            async for event in call:
                if event.WhichOneof("event") == "chunk":  # an older router: one per message
                    event = router_pb2.StreamEvent(
                        chunks=router_pb2.ChunkBatch(chunks=[event.chunk])
                    )
                yield event
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def list_models(self) -> list[router_pb2.ModelInfo]:
        """The router's model catalog."""
        try:
            resp = await self._stub.ListModels(
                router_pb2.ListModelsRequest(), timeout=_LIST_MODELS_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc
        return list(resp.models)

    async def serving(self, *, timeout_s: float = 1.0) -> bool:
        """True when the router's standard health check answers SERVING within ``timeout_s``."""
        try:
            resp = await self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return resp.status == health_pb2.HealthCheckResponse.SERVING
