"""The provider contract: what the router needs from any model provider.

An adapter translates one internal request into one provider HTTP call and
the provider's answer back into internal results. It never routes, retries,
bills or logs credentials: failover lives in ``router.failover`` and usage in
``router.usage``. Every failure leaves an adapter as a ``GatewayError``
(``ProviderUnavailable``/``ProviderTimeout`` are retryable,
``ProviderRejected`` is not), mapped once at the HTTP boundary.

    ProviderAdapter      name, complete, stream, list_models, aclose   (every provider)
    EmbeddingsAdapter    embed                                         (only if it can)

Optional abilities are separate ``runtime_checkable`` protocols, checked with
``isinstance``; an adapter never carries a method that only raises
"unsupported".
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Completion",
    "EmbeddingsAdapter",
    "Operation",
    "ProviderAdapter",
    "ProviderRequest",
    "StreamChunk",
    "Usage",
]

Operation = Literal["chat.completions", "embeddings", "responses"]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One provider call, immutable; failover builds one per attempt with ``replace``.

    ``body`` is the client's OpenAI JSON object, parsed once by the servicer and
    treated as read-only: adapters build their payload from it afresh on every
    attempt and never mutate it. ``provider_model`` replaces the body's
    ``model``. ``provider_key`` is the key this attempt presents to its provider
    (the caller's own, BYOK, or the project's managed credential for that
    provider; failover sets it per attempt) and overrides the configured
    credential for this call only; it must never be logged.
    ``max_output_tokens`` is the catalog model's output cap (0: unknown), for
    providers that require a limit when the client set none.
    """

    operation: Operation
    body: Mapping[str, Any]
    provider_model: str = ""
    provider_key: str | None = None
    request_id: str = ""
    max_output_tokens: int = 0

    def for_attempt(
        self, provider_model: str, provider_key: str | None, max_output_tokens: int
    ) -> ProviderRequest:
        """This request as one attempt sends it (``dataclasses.replace``, without its
        per-call field introspection: this runs on every attempt)."""
        return ProviderRequest(
            self.operation,
            self.body,
            provider_model,
            provider_key,
            self.request_id,
            max_output_tokens,
        )

    def __repr__(self) -> str:  # the body and key stay out of logs and tracebacks
        return (
            f"ProviderRequest({self.operation!r}, provider_model={self.provider_model!r}, "
            f"request_id={self.request_id!r}, own_key={self.provider_key is not None})"
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, in the OpenAI sense.

    ``prompt_tokens`` includes ``cached_tokens``; ``completion_tokens`` includes
    ``reasoning_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    #: Prompt tokens written to the provider's prompt cache (part of ``prompt_tokens``).
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished non-streaming call: the provider's JSON body as received, and its usage.

    ``usage`` is ``None`` when the provider did not report any.
    """

    body: bytes
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One event of a streamed call.

    ``data`` is one OpenAI ``chat.completion.chunk`` JSON object to forward to
    the client, or ``None`` when the event carried nothing OpenAI would send it
    (usage it did not ask for). ``usage`` is set on the event that reported it.
    ``final`` marks an end-of-stream chunk: a choice finishes in it (a non-null
    ``finish_reason``) or it is the usage chunk (usage and no choices). The
    router holds back only such chunks (one carries ``generation_context``, see
    ``router.generation``); the translating adapters finish a choice with an
    empty delta, as OpenAI does, so what is held is never content.
    """

    data: bytes | None
    usage: Usage | None = None
    final: bool = False


class ProviderAdapter(Protocol):
    """Talks to one provider entry of the catalog; one pooled HTTP client each.

    ``deadline`` is an absolute ``time.monotonic()`` instant (``None``: no
    deadline besides the configured timeouts); an adapter never waits past it.
    """

    @property
    def name(self) -> str:
        """The provider key in the catalog (e.g. ``"openai"``)."""
        ...

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        """Make one non-streaming call; raise ``GatewayError`` on any failure."""
        ...

    def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        """Make one streaming call, yielding chunks as they arrive (an async generator).

        Errors before or during the stream are raised as ``GatewayError``.
        ``aclose()`` before the end, or cancelling the consumer, closes the
        upstream response.
        """
        ...

    async def list_models(self) -> tuple[str, ...]:
        """The model names the provider itself offers."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client; no call may start afterwards."""
        ...


@runtime_checkable
class EmbeddingsAdapter(Protocol):
    """An adapter whose provider serves embeddings."""

    async def embed(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        """Make one embeddings call; raise ``GatewayError`` on any failure."""
        ...
