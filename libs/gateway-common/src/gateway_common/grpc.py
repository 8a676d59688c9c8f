"""gRPC helpers: metadata keys, the context interceptor, server bootstrap with health.

Metadata carried on every edge -> router call:

    x-request-id     the gateway request id

Deadlines ride on the call itself (``timeout=`` on the client stub), so a
servicer reads the remaining time from ``context.time_remaining()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .telemetry import REQUEST_ID

__all__ = [
    "REQUEST_ID_KEY",
    "ContextInterceptor",
    "add_health",
    "channel_options",
    "set_serving",
]

REQUEST_ID_KEY = "x-request-id"


def channel_options() -> list[tuple[str, Any]]:
    """Options for long-lived client channels: keepalive, no message size surprises."""
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


class ContextInterceptor(grpc.aio.ServerInterceptor):
    """Copies the request id from metadata into ``telemetry.REQUEST_ID`` for the call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == REQUEST_ID_KEY:
                REQUEST_ID.set(value if isinstance(value, str) else value.decode())
                break
        return await continuation(handler_call_details)


def add_health(server: grpc.aio.Server) -> health.aio.HealthServicer:
    """Register the standard gRPC health service (NOT_SERVING until ``set_serving``)."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, *services: str) -> None:
    """Mark the overall server and each named service SERVING."""
    for name in ("", *services):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
