"""Failover: try a model's deployments in catalog order, for retryable errors only.

    resolve -> [deployment 1] --retryable error--> [deployment 2] --> ... --> AllProvidersFailed
                     |                                   |
                     +-- success: result + RouteInfo     +-- non-retryable error: raised as is

Each attempt gets its own ``ProviderRequest`` (the immutable request with the
deployment's model), so nothing one attempt did leaks into the next. No
attempt starts once the call's deadline has passed. A stream is committed
only when its first chunk has arrived: until then a failure moves on to the
next deployment; after it, failures belong to the caller (the servicer turns
them into one in-band error event).

Circuit breakers and retry budgets will plug in at ``Failover._plan``, which
decides which candidates are tried and in what order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from gateway_common.errors import AllProvidersFailed, GatewayError, ProviderUnavailable

from .metrics import RouterMetrics
from .providers.base import ProviderRequest, StreamChunk
from .routing import Candidate, Route

__all__ = ["CommittedStream", "Failover", "Invoke", "RouteInfo"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One attempt: call ``candidate`` with its own request, within ``deadline``.
Invoke = Callable[[Candidate, ProviderRequest, float | None], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """Who served a call. ``upstream_ms`` sums the time spent on every attempt
    until the answer (unary) or the first chunk (stream) arrived."""

    provider: str
    deployment: str
    attempts: int
    model: str
    provider_model: str
    upstream_ms: float


class CommittedStream:
    """A stream whose first chunk has arrived: an async iterator of its chunks.

    ``aclose()`` (e.g. via ``contextlib.aclosing``) closes the provider stream,
    whether or not iteration has started.
    """

    def __init__(
        self, info: RouteInfo, first: StreamChunk, rest: AsyncGenerator[StreamChunk, None]
    ) -> None:
        self.info = info
        self._first: StreamChunk | None = first
        self._rest = rest

    def __aiter__(self) -> CommittedStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        """Close the provider stream."""
        await self._rest.aclose()


class Failover:
    """Runs attempts over a route's candidates; one instance per process."""

    def __init__(self, metrics: RouterMetrics) -> None:
        self._metrics = metrics

    async def call(
        self, route: Route, req: ProviderRequest, invoke: Invoke[T], *, deadline: float | None
    ) -> tuple[T, RouteInfo]:
        """Return the first successful attempt's result and who served it.

        Raises a non-retryable ``GatewayError`` as soon as one occurs, and
        ``AllProvidersFailed`` (every attempt's error, by ``provider/deployment``)
        when the candidates or the deadline ran out.
        """
        errors: dict[str, GatewayError] = {}
        spent = 0.0
        for number, candidate in enumerate(self._plan(route), start=1):
            if errors:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._metrics.failovers.labels(route.model).inc()
            started = time.monotonic()
            try:
                result = await invoke(
                    candidate, replace(req, provider_model=candidate.provider_model), deadline
                )
            except GatewayError as err:
                spent += time.monotonic() - started
                self._count(candidate, err.code)
                if not err.retryable:
                    raise
                log.warning("attempt %d on %s failed: %s", number, candidate.key, err.message)
                errors[candidate.key] = err
                continue
            elapsed = time.monotonic() - started
            self._count(candidate, "ok")
            self._metrics.upstream_latency.labels(
                candidate.provider, candidate.deployment.id, req.operation
            ).observe(elapsed)
            info = RouteInfo(
                provider=candidate.provider,
                deployment=candidate.deployment.id,
                attempts=number,
                model=route.model,
                provider_model=candidate.provider_model,
                upstream_ms=(spent + elapsed) * 1000,
            )
            return result, info
        raise AllProvidersFailed(errors)

    async def stream(
        self, route: Route, req: ProviderRequest, *, deadline: float | None
    ) -> CommittedStream:
        """Open a stream on the first candidate that delivers a first chunk (as ``call``)."""
        (first, rest), info = await self.call(route, req, _peek, deadline=deadline)
        return CommittedStream(info, first, rest)

    def _plan(self, route: Route) -> Sequence[Candidate]:
        """The candidates to try, in order: today the catalog order, unfiltered."""
        return route.candidates

    def _count(self, candidate: Candidate, outcome: str) -> None:
        self._metrics.attempts.labels(candidate.provider, candidate.deployment.id, outcome).inc()


async def _peek(
    candidate: Candidate, req: ProviderRequest, deadline: float | None
) -> tuple[StreamChunk, AsyncGenerator[StreamChunk, None]]:
    """Open a stream and wait for its first chunk.

    A generator that raised (or was cancelled) inside ``anext`` has already run
    its ``finally`` and closed the upstream response.
    """
    chunks = candidate.adapter.stream(req, deadline=deadline)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        raise ProviderUnavailable(
            f"Provider `{candidate.provider}` ended the stream before the first chunk"
        ) from None
    return first, chunks
