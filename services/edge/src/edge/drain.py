"""Graceful shutdown of the edge: readiness off, streams finish, or end in-band at a deadline.

    SIGTERM ──▶ uvicorn (``DrainingServer.handle_exit``) stops listening and waits for
      │         in-flight requests; ``Drain.begin`` runs on the event loop:
      ├─ /readyz answers 503 (``Drain.draining``)
      ├─ every open stream (``Drain.stream``) gets ``grace_s`` more; a stream still open
      │  then ends with an SSE error event (``server_shutting_down``) and its budget ticket
      │  is settled at the usage known (``edge.api.proxy``)
      └─ uvicorn cancels what is left ``grace_s + margin`` after the signal, then the
         lifespan shuts down in reverse (leases released, NATS and the router channel closed)

Usage is recorded by the router before a stream's final event, so a stream that ends
normally during the drain is billed like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn

from .http_protocol import protocol_class

__all__ = ["Drain", "DrainingServer"]

log = logging.getLogger(__name__)

#: Seconds uvicorn waits beyond the streams' grace before it cancels what is left.
UVICORN_MARGIN_S = 5.0


class Drain:
    """The edge's shutdown state: whether it drains, and the deadlines of open streams."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: set[asyncio.Timeout] = set()
        self._deadline: float | None = None

    @property
    def draining(self) -> bool:
        """True from the stop signal on (readiness is false)."""
        return self._deadline is not None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop ``begin_threadsafe`` schedules on (the lifespan calls this)."""
        self._loop = loop

    def begin_threadsafe(self) -> None:
        """``begin`` on the bound loop; safe from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin)

    def begin(self) -> None:
        """Start draining: every open stream (and any that starts now) must end by the deadline."""
        if self._deadline is not None:
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.grace_s
        for timeout in self._timeouts:
            timeout.reschedule(self._deadline)
        log.info(
            "draining: %d open streams get %.0f s to finish", len(self._timeouts), self.grace_s
        )

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[None]:
        """Run one stream's body; ``TimeoutError`` if it is still open at the drain deadline."""
        async with asyncio.timeout(self._deadline) as timeout:
            self._timeouts.add(timeout)
            try:
                yield
            finally:
                self._timeouts.discard(timeout)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that starts the app's ``Drain`` when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's own handling (stop listening, wait for requests), plus the drain."""
        self._drain.begin_threadsafe()
        super().handle_exit(sig, frame)

    @staticmethod
    def config_for(
        app: Any, *, host: str, port: int, grace_s: float, header_timeout_s: float = 10.0
    ) -> uvicorn.Config:
        """The edge's uvicorn configuration: uvloop, httptools with a request-head timeout
        (``edge.http_protocol``), lifespan, graceful timeout."""
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http=protocol_class(header_timeout_s),
            ws="none",  # no WebSocket route; "auto" imports websockets (gateway_common.lean)
            lifespan="on",
            access_log=False,
            log_config=None,  # telemetry.setup configures logging in the lifespan
            timeout_graceful_shutdown=int(grace_s + UVICORN_MARGIN_S),
        )
