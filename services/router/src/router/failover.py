"""Failover: the attempts one call makes over a model's deployments, until one answers.

    plan (balancer) -> pass 1: each deployment once, in plan order
                    -> pass 2..N (after a backoff): again, those that failed retryably
                    -> AllProvidersFailed (every attempt's error, in order)

Order. ``router.balancer`` orders the deployments: priority groups lowest
first (``Deployment.priority``; unset = list position, i.e. a plain ordered
failover list), load-balanced within a group (least in flight per weight,
then smooth weighted round robin), the rest of the group and the next groups
as the failover order.

What moves on. Retryable errors (connection errors, timeouts, 429, 5xx) move
to the next deployment at once: another deployment has no reason to be
backed off. A non-retryable error (a 4xx: the request's own fault) is raised
as it is, without trying anyone else.

Bounds. ``resilience.retry.passes`` bounds the attempts (at most passes x
deployments). Before a deployment is tried again it waits its backoff
(``backoff_s`` doubling per pass, capped at ``max_backoff_s``, with jitter)
or the ``Retry-After`` it sent, whichever is longer; a ``Retry-After`` above
``max_retry_after_s``, or a wait that would end past the call's deadline,
means that deployment is not tried again. No attempt starts after the
deadline, and every attempt after the first spends from the replica's retry
budget (``router.budget``); a spent budget ends the call.

Circuit breakers. Each deployment has one (``router.breaker``), with its
provider's settings (``Candidate.breaker``); an attempt on a managed
credential's own base URL (``Candidate.upstream``) answers to the breaker of
that (deployment, URL) instead, so a project's broken URL never opens the
breaker other projects share, and the reverse. An open breaker skips its
deployment (listed in the final error as ``circuit_open``, with the status of
the failure that opened it) until a half-open probe succeeds, and the call
moves on to the next one. When every breaker is open the call fails
at once: that is the point of a breaker.

Streams. A stream is committed when its first chunk arrives; until then a
failure moves on like any other. After it, failures belong to the caller (the
servicer sends one in-band error event), and a retryable one still counts
against the deployment's breaker.

Credentials. A call may bring provider keys by provider name (``keys``): a
BYOK call its own key for the one provider its route was narrowed to
(``Route.one_provider``), otherwise the project's managed credentials. Each
attempt carries, as ``ProviderRequest.provider_key``, only the key of its own
candidate's provider (none: the adapter's configured key), so a key never
reaches another provider, and a failed attempt's message has the key redacted
before it is logged or returned (providers echo rejected keys).

``RouteInfo.attempts`` is the number of attempts made, the successful one
included (2 = one failure, then an answer); skipped deployments are not
attempts. ``upstream_ms`` covers the attempts and the waits between them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from gateway_common.catalog import BreakerPolicy, RetryPolicy
from gateway_common.errors import AllProvidersFailed, GatewayError, ProviderUnavailable

from .balancer import Balancer
from .breaker import DEFAULT_MAX_CUSTOM, Breaker, Breakers
from .budget import RetryBudget
from .metrics import RouterMetrics
from .providers.base import ProviderRequest, StreamChunk
from .routing import Candidate, Route

__all__ = ["NO_KEYS", "CommittedStream", "Failover", "Invoke", "RouteInfo"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: No provider keys: every attempt uses its adapter's configured credential.
NO_KEYS: Mapping[str, str] = MappingProxyType({})

#: One attempt: call ``candidate`` with its own request, within ``deadline``.
Invoke = Callable[[Candidate, ProviderRequest, float | None], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """Who served a call, after how many attempts, and the time spent on them."""

    provider: str
    deployment: str
    attempts: int
    model: str
    provider_model: str
    upstream_ms: float
    publish_ms: float = 0.0
    """A unary call's usage publish and JetStream ack (``RouterService.complete``)."""


class _Lease:
    """What the successful attempt still holds: an in-flight slot and its breaker."""

    __slots__ = ("_balancer", "_breaker", "_key", "_policy", "_released")

    def __init__(
        self, balancer: Balancer, breaker: Breaker, key: str, policy: BreakerPolicy
    ) -> None:
        self._balancer = balancer
        self._breaker = breaker
        self._key = key
        self._policy = policy
        self._released = False

    def release(self, error: GatewayError | None = None) -> None:
        """Free the in-flight slot (once); a retryable ``error`` counts against the breaker."""
        if self._released:
            return
        self._released = True
        self._balancer.release(self._key)
        if error is not None and error.retryable:
            self._breaker.broke_after_commit(self._policy, error.http_status)


@dataclass(slots=True)
class _CallState:
    """What one call's attempts have done so far."""

    route: Route
    deadline: float | None
    started: float
    attempts: int = 0
    previous: Candidate | None = None
    failures: list[tuple[str, GatewayError]] = field(default_factory=list)
    #: Deployment key -> earliest time it may be attempted again.
    retry_at: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Won(Generic[T]):
    result: T
    info: RouteInfo
    lease: _Lease


class CommittedStream:
    """A stream whose first chunk has arrived: an async iterator of its chunks.

    ``aclose()`` (e.g. via ``contextlib.aclosing``) closes the provider stream,
    whether or not iteration has started, and ends the deployment's in-flight
    count. Errors raised while iterating are the provider's, after the commit.
    """

    def __init__(
        self,
        info: RouteInfo,
        first: StreamChunk,
        rest: AsyncGenerator[StreamChunk, None],
        lease: _Lease | None = None,
    ) -> None:
        self.info = info
        self._first: StreamChunk | None = first
        self._rest = rest
        self._lease = lease

    def __aiter__(self) -> CommittedStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await anext(self._rest)
        except GatewayError as err:
            self._release(err)
            raise

    async def aclose(self) -> None:
        """Close the provider stream."""
        try:
            await self._rest.aclose()
        finally:
            self._release(None)

    def _release(self, error: GatewayError | None) -> None:
        if self._lease is not None:
            self._lease.release(error)


class Failover:
    """Runs a call's attempts over a route (see the module docstring); one per process.

    Owns the per-process state that outlives catalog reloads: breakers,
    in-flight counts and the retry budget. ``clock``, ``sleep`` and ``rng``
    are injectable for tests; ``max_custom_breakers`` bounds the breakers of
    custom upstreams (``router.breaker``).
    """

    def __init__(
        self,
        metrics: RouterMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        max_custom_breakers: int = DEFAULT_MAX_CUSTOM,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.breakers = Breakers(metrics, clock, max_custom=max_custom_breakers)
        self.balancer = Balancer(metrics)
        self._budget = RetryBudget(clock)

    async def call(
        self,
        route: Route,
        req: ProviderRequest,
        invoke: Invoke[T],
        *,
        deadline: float | None,
        keys: Mapping[str, str] = NO_KEYS,
    ) -> tuple[T, RouteInfo]:
        """Return the first successful attempt's result and who served it.

        ``keys`` maps a provider name to the key its attempts present (module
        docstring, Credentials). Raises a non-retryable ``GatewayError`` as soon
        as one occurs, and ``AllProvidersFailed`` when the attempts, the
        deadline or the retry budget ran out.
        """
        won = await self._run(route, req, invoke, deadline, keys)
        won.lease.release()
        return won.result, won.info

    async def stream(
        self,
        route: Route,
        req: ProviderRequest,
        *,
        deadline: float | None,
        keys: Mapping[str, str] = NO_KEYS,
    ) -> CommittedStream:
        """Open a stream on the first attempt that delivers a first chunk (as ``call``)."""
        won = await self._run(route, req, _peek, deadline, keys)
        first, rest = won.result
        return CommittedStream(won.info, first, rest, won.lease)

    async def _run(
        self,
        route: Route,
        req: ProviderRequest,
        invoke: Invoke[T],
        deadline: float | None,
        keys: Mapping[str, str],
    ) -> _Won[T]:
        policy = route.policy
        self._budget.called(policy.retry_budget)
        # Adapters whose provider requires an output cap (Anthropic) fall back to the catalog's.
        max_output_tokens = route.entry.max_output_tokens
        call = _CallState(route, deadline, started=self._clock())
        queue = self.balancer.order(route)
        for number in range(1, policy.retry.passes + 1):
            again: list[Candidate] = []
            for candidate in queue:
                settings = candidate.breaker or policy.breaker
                breaker = await self._gate(call, candidate, number, settings)
                if breaker is None:
                    continue
                try:
                    attempt = req.for_attempt(
                        candidate.provider_model, keys.get(candidate.provider), max_output_tokens
                    )
                    result = await self._attempt(
                        candidate, breaker, attempt, invoke, deadline, settings
                    )
                except GatewayError as err:
                    if not err.retryable:
                        raise
                    log.warning("attempt %d on %s failed: %s", call.attempts, candidate.key, err)
                    call.failures.append((candidate.key, err))
                    when = self._next_try(err, number, policy.retry, deadline)
                    if when is not None:
                        call.retry_at[candidate.key] = when
                        again.append(candidate)
                    continue
                info = RouteInfo(
                    provider=candidate.provider,
                    deployment=candidate.deployment.id,
                    attempts=call.attempts,
                    model=route.model,
                    provider_model=candidate.provider_model,
                    upstream_ms=(self._clock() - call.started) * 1000,
                )
                return _Won(result, info, _Lease(self.balancer, breaker, candidate.key, settings))
            queue = again
        raise AllProvidersFailed(call.failures)

    async def _gate(
        self, call: _CallState, candidate: Candidate, number: int, settings: BreakerPolicy
    ) -> Breaker | None:
        """Let ``candidate`` be attempted now (its admitted breaker), or skip it (``None``).

        Waits out its backoff first; raises ``AllProvidersFailed`` when the deadline
        passed or the retry budget is spent. ``settings``: the candidate's breaker policy.
        """
        key, policy = candidate.key, call.route.policy
        if call.attempts:
            if call.deadline is not None and self._clock() >= call.deadline:
                raise AllProvidersFailed(call.failures)
            if (wait := call.retry_at.get(key, 0.0) - self._clock()) > 0:
                await self._sleep(wait)
        breaker = self.breakers.of(candidate)
        if not breaker.admit(settings):
            if number == 1:
                call.failures.append((key, _circuit_open(candidate, breaker, settings)))
            return None
        model = call.route.model
        if call.attempts and not self._budget.try_retry(policy.retry_budget):
            breaker.abandoned()
            self._metrics.retry_budget_exhausted.labels(model).inc()
            log.warning("retry budget spent: %s stops after %d attempts", model, call.attempts)
            raise AllProvidersFailed(call.failures)
        if call.previous is not None:
            same = call.previous is candidate
            (self._metrics.retries if same else self._metrics.failovers).labels(model).inc()
        call.attempts += 1
        call.previous = candidate
        return breaker

    async def _attempt(
        self,
        candidate: Candidate,
        breaker: Breaker,
        req: ProviderRequest,
        invoke: Invoke[T],
        deadline: float | None,
        settings: BreakerPolicy,
    ) -> T:
        """One attempt (``req`` is already this attempt's), with its in-flight slot, breaker
        verdict and metrics; a failure's message never carries the attempt's key.

        On success the in-flight slot stays taken: the caller's ``_Lease`` frees it.
        """
        key = candidate.key
        self.balancer.acquire(key)
        started = self._clock()
        try:
            result = await invoke(candidate, req, deadline)
        except GatewayError as err:
            _redact(err, req.provider_key)
            self.balancer.release(key)
            self._count(candidate, err.code)
            if err.retryable:
                breaker.failed(settings, err.http_status)
            else:  # the provider answered; the request was at fault
                breaker.succeeded(settings)
            raise
        except BaseException:
            self.balancer.release(key)
            breaker.abandoned()
            raise
        breaker.succeeded(settings)
        self._count(candidate, "ok")
        self._metrics.child(
            self._metrics.upstream_latency,
            candidate.provider,
            candidate.deployment.id,
            req.operation,
        ).observe(self._clock() - started)
        return result

    def _next_try(
        self, err: GatewayError, number: int, retry: RetryPolicy, deadline: float | None
    ) -> float | None:
        """When the failed deployment may be tried again in this call; ``None``: not at all."""
        if number >= retry.passes:
            return None
        retry_after = err.retry_after if isinstance(err, ProviderUnavailable) else None
        if retry_after is not None and retry_after > retry.max_retry_after_s:
            return None
        backoff = min(retry.max_backoff_s, retry.backoff_s * 2 ** (number - 1))
        wait = max(self._rng.uniform(backoff / 2, backoff), retry_after or 0.0)
        when = self._clock() + wait
        return None if deadline is not None and when >= deadline else when

    def _count(self, candidate: Candidate, outcome: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.attempts, candidate.provider, candidate.deployment.id, outcome).inc()


def _redact(err: GatewayError, secret: str | None) -> None:
    """Remove ``secret`` from ``err``'s message, in place (before anyone logs or sends it)."""
    if secret and secret in err.message:
        err.message = err.message.replace(secret, "[redacted]")
        err.args = (err.message,)


def _circuit_open(
    candidate: Candidate, breaker: Breaker, settings: BreakerPolicy
) -> ProviderUnavailable:
    retry_in = breaker.retry_in(settings)
    # A custom upstream is the project's own base URL: named as such, not by the URL.
    which = "its" if candidate.upstream is None else "its custom base URL's"
    return ProviderUnavailable(
        f"Deployment `{candidate.key}` skipped: {which} circuit breaker is open "
        f"(next probe in {retry_in:.1f} s)",
        retry_after=retry_in,
        code="circuit_open",
        http_status=breaker.opened_by,
    )


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
