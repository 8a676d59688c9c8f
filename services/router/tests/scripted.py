"""Test support for failover: scripted provider adapters, routes over them, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from gateway_common.catalog import Deployment, ModelEntry, Resilience
from gateway_common.errors import GatewayError
from router.providers.base import Completion, ProviderRequest, StreamChunk
from router.routing import Candidate, Route

Step = StreamChunk | GatewayError

REQ = ProviderRequest("chat.completions", {"model": "public", "messages": []})


@dataclass
class Scripted:
    """A fake provider adapter.

    ``complete``: call n answers ``then[n]`` while there is one, ``result``
    afterwards (an error is raised). ``stream`` yields ``steps`` (an error is
    raised) and counts how often a stream was closed.
    """

    name: str
    result: Completion | GatewayError = field(default_factory=lambda: Completion(b"{}", None))
    steps: Sequence[Step] = ()
    then: Sequence[Completion | GatewayError] = ()
    requests: list[ProviderRequest] = field(default_factory=list)
    closed_streams: int = 0

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        self.requests.append(req)
        n = len(self.requests) - 1
        answer = self.then[n] if n < len(self.then) else self.result
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        self.requests.append(req)
        try:
            for step in self.steps:
                if isinstance(step, GatewayError):
                    raise step
                yield step
        finally:
            self.closed_streams += 1

    async def list_models(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        pass


def route(
    *adapters: Scripted, policy: Resilience | None = None, **deployment: dict[str, Any]
) -> Route:
    """A route over ``adapters`` in order; ``deployment[name]`` adds fields to one's Deployment."""
    candidates = tuple(
        Candidate(
            a.name,
            Deployment(provider=a.name, model=f"{a.name}-model", **deployment.get(a.name, {})),
            a,
        )
        for a in adapters
    )
    entry = ModelEntry(deployments=[c.deployment for c in candidates])
    return Route("public", entry, candidates, policy or Resilience())


def policy(**sections: dict[str, Any]) -> Resilience:
    """A ``Resilience`` from plain dicts, e.g. ``policy(retry={"passes": 1})``."""
    return Resilience.model_validate(sections)


async def complete(
    candidate: Candidate, req: ProviderRequest, deadline: float | None
) -> Completion:
    return await candidate.adapter.complete(req, deadline=deadline)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


class Clock:
    """A manual monotonic clock whose ``sleep`` advances it at once (and records the wait)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
