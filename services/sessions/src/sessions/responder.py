"""The request/reply machinery shared by sessions' NATS services (stored responses, history).

A ``Responder`` subscribes to the subjects its subclass maps to operations,
in queue group ``sessions`` so replicas share requests. A nats-py
subscription runs its callback one message at a time, so each message is
handled in its own task (at most ``max_in_flight`` at once per responder;
past that the subscription waits), which keeps one slow commit from holding
up every lookup. A request that cannot be parsed, or whose database work
fails, is answered at once (``malformed`` / ``failure`` replies of the
subclass) rather than leaving the caller to time out. Each answer is counted
and timed in ``metrics`` (``sessions.metrics``) when one is given. ``aclose`` drains the
subscriptions and waits for the tasks in flight, so it must run before the
engine is disposed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from gateway_common import subjects, telemetry

from .metrics import SessionsMetrics

__all__ = ["Operation", "Reply", "Responder"]

log = logging.getLogger(__name__)


class Reply(Protocol):
    """What an operation answers: anything that serializes to a NATS payload."""

    @property
    def status(self) -> str:
        """The reply's status (a fixed set per reply model)."""
        ...

    def to_bytes(self) -> bytes:
        """The reply's payload."""
        ...


#: Handles one request's payload; may raise ``ValidationError`` or ``SQLAlchemyError``.
Operation = Callable[[bytes], Awaitable[Reply]]


class Responder(ABC):
    """Serves ``operations()`` over NATS request/reply (see module docstring)."""

    #: Names the responder in logs.
    label: ClassVar[str] = "sessions"

    def __init__(self, *, max_in_flight: int = 64, metrics: SessionsMetrics | None = None) -> None:
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    @abstractmethod
    def operations(self) -> Mapping[str, Operation]:
        """Subject -> the operation that answers it."""

    @abstractmethod
    def failure(self, subject: str, message: str) -> Reply:
        """The reply on ``subject`` when its operation could not be done (status ``error``)."""

    def malformed(self, subject: str, exc: ValidationError) -> Reply:
        """The reply to a request on ``subject`` that does not parse (default: a ``failure``)."""
        return self.failure(subject, "malformed request")

    async def start(self, nc: Client) -> None:
        """Subscribe to every subject of ``operations()`` (queue group ``sessions``)."""
        for subject, operation in self.operations().items():
            self._subs.append(
                await nc.subscribe(
                    subject, queue=subjects.SESSIONS_QUEUE, cb=self._spawn(operation)
                )
            )

    async def aclose(self) -> None:
        """Stop taking requests, answer the ones already received, wait for them all."""
        for sub in self._subs:
            await sub.drain()
        self._subs.clear()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, operation: Operation) -> Callable[[Msg], Awaitable[None]]:
        async def callback(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(msg, operation))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return callback

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg, operation: Operation) -> None:
        started = time.perf_counter()
        with telemetry.consumer_span(msg, "process"):
            try:
                reply = await operation(msg.data)
            except ValidationError as exc:
                reply = self.malformed(msg.subject, exc)
            except SQLAlchemyError as exc:
                log.error("%s: database error on %s: %s", self.label, msg.subject, exc)
                reply = self.failure(msg.subject, "database error")
            if self.metrics is not None:
                self.metrics.observe(
                    subject=msg.subject,
                    status=reply.status,
                    seconds=time.perf_counter() - started,
                )
            try:
                await msg.respond(reply.to_bytes())
            except NatsError as exc:
                log.warning("%s: reply on %s not sent: %s", self.label, msg.subject, exc)
