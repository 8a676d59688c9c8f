"""What the pipeline takes and gives: surface-neutral types, no HTTP framework in them.

GatewayCall   one call as a surface parsed it: the caller's messages, ``variables``,
              ``stream``, ``session_id``, who calls (the key) and the request id
Upstream      how the provider-call step reaches the router (the surface adapts
              ``Proxy.forward``); ``complete`` gives an ``UpstreamAnswer``,
              ``stream`` the surface's own streaming response (``S``, opaque here)
History       what the session step (14s) prepends, and the meta it reports
Completion    a unary answer after the output checks (content possibly redacted)
Outcome       the pipeline's result: a ``Completion`` or the stream ``S``, the model
              that answered (the endpoint's or a fallback) and the attempts of the
              models that failed before it
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from ..auth import KeyEntry

__all__ = [
    "Completion",
    "GatewayCall",
    "Outcome",
    "StreamShaper",
    "Upstream",
    "UpstreamAnswer",
]

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One call to an endpoint, as its surface parsed it (immutable: a step that rewrites
    it, input redaction, returns a new one)."""

    key: KeyEntry
    request_id: str
    #: The caller's messages (OpenAI chat messages); empty when only ``variables`` came.
    messages: tuple[Mapping[str, Any], ...] = ()
    #: The request's ``variables`` object (None: absent).
    variables: Mapping[str, Any] | None = None
    stream: bool = False
    session_id: str | None = None

    @property
    def project_id(self) -> str:
        return self.key.project_id


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """A unary router answer: the OpenAI completion body and the route headers
    (``x-switchyard-provider``, ``-deployment``, ``-attempts``, ``server-timing``, ...)."""

    body: bytes
    headers: Mapping[str, str]

    @property
    def attempts(self) -> int:
        value = self.headers.get("x-switchyard-attempts") or "0"
        return int(value) if value.isdigit() else 0


class StreamShaper(Protocol):
    """Rewrites a stream's chunks for the client (``edge.api.proxy.Shaper``'s contract):
    ``frame`` one chunk's JSON into its SSE frame(s), ``finish`` what is written after a
    good stream's last chunk; a ``GatewayError`` from either ends the stream with an
    error event."""

    async def body(self, body: bytes) -> bytes: ...

    async def frame(self, chunk: bytes) -> bytes: ...

    async def finish(self) -> bytes: ...


class Upstream(Protocol[S_co]):
    """The router, as the provider-call step sees it: one attempt at one model.

    Both raise ``GatewayError`` (a provider failure after the router's own failover,
    a budget refusal, ...); a stream's error before its first chunk is raised too.
    ``check_budget`` is the budget step's: it raises the refusal an attempt with
    ``body`` would meet now, and reserves nothing.
    """

    async def check_budget(self, model: str, body: bytes) -> None: ...

    async def complete(self, model: str, body: bytes) -> UpstreamAnswer: ...

    async def stream(self, model: str, body: bytes, shaper: StreamShaper | None) -> S_co: ...


@dataclass(frozen=True, slots=True)
class Completion:
    """A unary answer after the output checks."""

    id: str
    model: str
    content: str | None
    finish_reason: str | None
    usage: Mapping[str, int]
    headers: Mapping[str, str]
    generation_context: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Outcome(Generic[S]):
    """The pipeline's result (module docstring)."""

    answer: Completion | S
    model: str
    #: Attempts of the models that failed before ``model`` answered (0: the first did).
    prior_attempts: int = 0
    #: What the answer's ``meta`` says about the session (empty: no session).
    session_meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The session's id (None: no session), for the ``x-switchyard-session-id`` header.
    session_id: str | None = None
