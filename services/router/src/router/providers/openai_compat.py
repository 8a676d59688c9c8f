"""Adapter for OpenAI-compatible providers (OpenAI itself, vLLM, the dev fake, ...).

Translation only: ``to_provider`` builds the provider payload from the
immutable request (the body's ``model`` becomes the deployment's model; a
stream always asks for ``stream_options.include_usage`` so the call can be
billed), ``from_provider`` reads a finished body, ``parse_chunk`` reads one
SSE data payload, and ``_map_error`` turns a failed HTTP response into our
error types. Bodies and chunks pass through as the provider's bytes; a chunk
is re-serialized only to strip usage the client did not ask for.

How a provider differs from api.openai.com in where an operation lives and
how it takes a key is a ``Dialect``; Azure OpenAI (deployment-scoped paths,
``api-version`` query, ``api-key`` header) is a second dialect registered
under its own kind, not a branch in this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import (
    GatewayError,
    InvalidRequest,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    map_exceptions,
)

from .base import Completion, Operation, ProviderRequest, StreamChunk, Usage
from .sse import SSEDecoder

__all__ = [
    "OPENAI",
    "Dialect",
    "OpenAICompatAdapter",
    "build",
    "from_provider",
    "parse_chunk",
    "to_provider",
]

#: httpx failures, most specific first (``map_exceptions`` takes the first match).
_HTTPX_ERRORS: Mapping[type[BaseException], type[GatewayError]] = MappingProxyType(
    {
        httpx.ConnectTimeout: ProviderUnavailable,
        httpx.ConnectError: ProviderUnavailable,
        httpx.RemoteProtocolError: ProviderUnavailable,
        httpx.ReadError: ProviderUnavailable,
        httpx.ReadTimeout: ProviderTimeout,
        httpx.PoolTimeout: ProviderTimeout,
        httpx.WriteTimeout: ProviderTimeout,
        httpx.TransportError: ProviderUnavailable,
    }
)

#: Provider 4xx statuses the client sees as they are, with the provider's message.
_PASSTHROUGH_STATUSES = frozenset({400, 404, 409, 413, 422})


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where an OpenAI-compatible provider serves each operation, and how it takes a key."""

    paths: Mapping[Operation, str]
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "

    def auth(self, key: str) -> dict[str, str]:
        """The header that carries ``key``."""
        return {self.auth_header: f"{self.auth_prefix}{key}"}


OPENAI = Dialect(
    paths=MappingProxyType(
        {
            "chat.completions": "chat/completions",
            "embeddings": "embeddings",
            "responses": "responses",
        }
    )
)


# -- provider wire format (only the parts the router reads) -------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _PromptDetails(_Wire):
    cached_tokens: int | None = None


class _CompletionDetails(_Wire):
    reasoning_tokens: int | None = None


class _WireUsage(_Wire):
    """Chat/embeddings names, plus the Responses API names (``input_tokens`` ...)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _PromptDetails | None = None
    output_tokens_details: _CompletionDetails | None = None

    def to_usage(self) -> Usage:
        prompt = self.prompt_tokens or self.input_tokens or 0
        completion = self.completion_tokens or self.output_tokens or 0
        prompt_details = self.prompt_tokens_details or self.input_tokens_details
        completion_details = self.completion_tokens_details or self.output_tokens_details
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=self.total_tokens or prompt + completion,
            cached_tokens=(prompt_details and prompt_details.cached_tokens) or 0,
            reasoning_tokens=(completion_details and completion_details.reasoning_tokens) or 0,
        )


class _WireError(_Wire):
    message: str = ""
    param: str | None = None


class _ErrorEnvelope(_Wire):
    error: _WireError


# -- pure translation ----------------------------------------------------------


def to_provider(req: ProviderRequest, *, stream: bool) -> bytes:
    """The provider payload for ``req``: the client body with ``model`` replaced.

    A stream always asks for usage; a non-stream call drops stream fields.
    """
    payload = dict(req.body)
    payload["model"] = req.provider_model
    if stream:
        payload["stream"] = True
        options = payload.get("stream_options")
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    return orjson.dumps(payload)


def _client_wants_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    try:
        return _WireUsage.model_validate(value).to_usage()
    except ValidationError:
        return None


def _json_object(content: bytes, provider: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise ProviderUnavailable(f"Provider `{provider}` sent a body that is not a JSON object")
    return obj


def from_provider(content: bytes, provider: str) -> Completion:
    """Read a successful non-streaming body; it is returned unchanged with its usage."""
    return Completion(body=content, usage=_usage(_json_object(content, provider).get("usage")))


def parse_chunk(data: bytes, provider: str, *, forward_usage: bool) -> StreamChunk:
    """Read one SSE data payload of a chat stream.

    A chunk carrying an ``error`` raises ``ProviderUnavailable``. Usage is
    reported on the chunk that carries it; when the client did not ask for it
    (``forward_usage`` false) a usage-only chunk is not forwarded and usage is
    stripped from a chunk that also has choices.
    """
    obj = _json_object(data, provider)
    if (error := obj.get("error")) is not None:
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProviderUnavailable(f"Provider `{provider}` failed mid-stream: {detail}")
    usage = _usage(obj.get("usage"))
    if usage is None or forward_usage:
        return StreamChunk(data, usage)
    if not obj.get("choices"):
        return StreamChunk(None, usage)
    del obj["usage"]
    return StreamChunk(orjson.dumps(obj), usage)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if (millis := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000)
    if (value := headers.get("retry-after")) is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _map_error(response: httpx.Response, provider: str) -> GatewayError:
    """Our error for a provider's non-2xx answer (its body must already be read).

    429/5xx are retryable, 408 is a timeout; other 4xx are the request's fault.
    For 400/404/409/413/422 the client sees the provider's status and message;
    anything else (401, 403, ...) becomes a 502 whose message names no secret.
    """
    status = response.status_code
    try:
        error: _WireError | None = _ErrorEnvelope.model_validate_json(response.content).error
    except ValidationError:
        error = None
    said = f": {error.message}" if error and error.message else ""
    if status == 429 or status >= 500:
        return ProviderUnavailable(
            f"Provider `{provider}` answered {status}{said}",
            retry_after=_retry_after(response.headers),
        )
    if status == 408:
        return ProviderTimeout(f"Provider `{provider}` timed out (408)")
    if status in _PASSTHROUGH_STATUSES:
        return ProviderRejected(
            error.message
            if error and error.message
            else f"Provider `{provider}` answered {status}",
            http_status=status,
            param=error.param if error else None,
        )
    return ProviderRejected(f"Provider `{provider}` refused the request ({status})")


# -- the adapter ---------------------------------------------------------------


def _capped(limit: float | None, left: float) -> float:
    return left if limit is None else min(limit, left)


class OpenAICompatAdapter:
    """``ProviderAdapter`` and ``EmbeddingsAdapter`` over one pooled ``httpx.AsyncClient``.

    The client carries the base URL, default headers (including the configured
    key) and the catalog's timeouts; each call narrows the timeouts to what is
    left of its deadline. The adapter owns the client and closes it in ``aclose``.
    """

    def __init__(self, name: str, client: httpx.AsyncClient, *, dialect: Dialect = OPENAI) -> None:
        self._name = name
        self._client = client
        self._dialect = dialect

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"OpenAICompatAdapter({self._name!r}, {self._client.base_url})"

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        return await self._post(req, to_provider(req, stream=False), deadline)

    async def embed(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        return await self._post(req, to_provider(req, stream=False), deadline)

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        if req.operation != "chat.completions":
            raise InvalidRequest(f"Streaming is not supported for {req.operation}", param="stream")
        forward_usage = _client_wants_usage(req.body)
        request = self._request(req, to_provider(req, stream=True), deadline)
        with map_exceptions(_HTTPX_ERRORS):
            response = await self._client.send(request, stream=True)
        try:
            if not response.is_success:
                with map_exceptions(_HTTPX_ERRORS):
                    await response.aread()
                raise _map_error(response, self._name)
            decoder = SSEDecoder()
            raw_chunks = response.aiter_bytes()
            while True:
                with map_exceptions(_HTTPX_ERRORS):
                    raw = await anext(raw_chunks, None)
                for event in decoder.feed(raw) if raw is not None else decoder.flush():
                    if event.data == b"[DONE]":
                        return
                    yield parse_chunk(event.data, self._name, forward_usage=forward_usage)
                if raw is None:
                    return
        finally:
            await response.aclose()

    async def list_models(self) -> tuple[str, ...]:
        with map_exceptions(_HTTPX_ERRORS):
            response = await self._client.get("models")
        if not response.is_success:
            raise _map_error(response, self._name)
        data = _json_object(response.content, self._name).get("data")
        return tuple(
            str(item["id"]) for item in data or () if isinstance(item, dict) and "id" in item
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(
        self, req: ProviderRequest, payload: bytes, deadline: float | None
    ) -> Completion:
        request = self._request(req, payload, deadline)
        with map_exceptions(_HTTPX_ERRORS):
            response = await self._client.send(request)
        if not response.is_success:
            raise _map_error(response, self._name)
        return from_provider(response.content, self._name)

    def _request(
        self, req: ProviderRequest, payload: bytes, deadline: float | None
    ) -> httpx.Request:
        headers = self._dialect.auth(req.provider_key) if req.provider_key else None
        return self._client.build_request(
            "POST",
            self._dialect.paths[req.operation],
            content=payload,
            headers=headers,
            timeout=self._timeout(deadline),
        )

    def _timeout(self, deadline: float | None) -> httpx.Timeout:
        configured = self._client.timeout
        if deadline is None:
            return configured
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProviderTimeout("The deadline passed before the provider was called")
        return httpx.Timeout(
            connect=_capped(configured.connect, left),
            read=_capped(configured.read, left),
            write=_capped(configured.write, left),
            pool=_capped(configured.pool, left),
        )


def build(
    name: str,
    entry: ProviderEntry,
    api_key: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAICompatAdapter:
    """Adapter factory for catalog kind ``openai``: one pooled HTTP/1.1 client per provider.

    ``api_key`` is the configured credential (already read from the environment
    by the registry); ``transport`` replaces the network, for tests.
    """
    headers = {"content-type": "application/json", **entry.headers}
    if api_key:
        headers |= OPENAI.auth(api_key)
    client = httpx.AsyncClient(
        base_url=entry.base_url,
        headers=headers,
        http2=False,
        transport=transport,
        limits=httpx.Limits(
            max_connections=entry.max_connections,
            max_keepalive_connections=entry.max_connections,
        ),
        timeout=httpx.Timeout(entry.read_timeout_s, connect=entry.connect_timeout_s),
    )
    return OpenAICompatAdapter(name, client)
