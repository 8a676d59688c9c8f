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
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import GatewayError, InvalidRequest, ProviderUnavailable

from ._client import ProviderClient, new_client
from ._http import json_object, list_names, send, sse_events, status_error
from .base import Completion, Operation, ProviderRequest, StreamChunk, Usage

__all__ = [
    "AZURE",
    "OPENAI",
    "Dialect",
    "OpenAICompatAdapter",
    "build",
    "build_azure",
    "from_provider",
    "parse_chunk",
    "to_provider",
]


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where an OpenAI-compatible provider serves each operation, and how it takes a key.

    A path may name the deployment's model as ``{model}`` (URL-escaped), for
    providers whose URLs are scoped to a deployment.
    """

    paths: Mapping[Operation, str]
    models_path: str = "models"
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "

    def path(self, operation: Operation, model: str) -> str:
        """The path, relative to the base URL, of ``operation`` on ``model``."""
        return self.paths[operation].format(model=quote(model, safe=""))

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

#: Azure OpenAI: the base URL is the resource endpoint, the model is the
#: deployment name and sits in the path (the Responses API takes it in the
#: body), every call carries ``api-version`` (set on the client), and the key
#: travels in ``api-key``.
AZURE = Dialect(
    paths=MappingProxyType(
        {
            "chat.completions": "openai/deployments/{model}/chat/completions",
            "embeddings": "openai/deployments/{model}/embeddings",
            "responses": "openai/responses",
        }
    ),
    models_path="openai/models",
    auth_header="api-key",
    auth_prefix="",
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
    code: str | int | None = None


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


def from_provider(content: bytes, provider: str) -> Completion:
    """Read a successful non-streaming body; it is returned unchanged with its usage."""
    return Completion(body=content, usage=_usage(json_object(content, provider).get("usage")))


#: How OpenAI ends a chunk that reports no usage yet (``stream_options.include_usage``).
_NULL_USAGE_TAIL = b',"usage":null}'


def _finishes(choices: list[Any]) -> bool:
    return any(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)


def parse_chunk(data: bytes, provider: str, *, forward_usage: bool) -> StreamChunk:
    """Read one SSE data payload of a chat stream: what the client gets of it, its usage.

    A chunk carrying an ``error`` raises ``ProviderUnavailable``. Usage is
    reported on the chunk that carries it; ``final`` is set on a chunk in
    which a choice finishes and on the usage chunk. The client gets the chunks
    OpenAI sends for its request: when it did not ask for usage
    (``forward_usage`` false) the usage-only chunk is not forwarded and the
    ``usage`` key (null, or usage beside choices) is removed from the others;
    a chunk with neither choices nor usage (Azure's first one, its
    ``prompt_filter_results``) is never forwarded, since a client that reads
    ``choices[0]`` fails on it. A chunk is re-serialized only when its usage
    key is not OpenAI's trailing ``"usage":null``, which is cut off as bytes.
    """
    obj = json_object(data, provider)
    if (error := obj.get("error")) is not None:
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProviderUnavailable(f"Provider `{provider}` failed mid-stream: {detail}")
    usage = _usage(obj.get("usage"))
    choices = obj.get("choices")
    if not choices or not isinstance(choices, list):
        if usage is None:
            return StreamChunk(None)
        return StreamChunk(data if forward_usage else None, usage, final=True)
    final = _finishes(choices)
    if forward_usage or "usage" not in obj:
        return StreamChunk(data, usage, final=final)
    if data.endswith(_NULL_USAGE_TAIL):
        return StreamChunk(data[: -len(_NULL_USAGE_TAIL)] + b"}", usage, final=final)
    del obj["usage"]
    return StreamChunk(orjson.dumps(obj), usage, final=final)


def _map_error(response: httpx.Response, provider: str) -> GatewayError:
    """Our error for a provider's non-2xx answer (its body must already be read).

    The policy is ``_http.status_error``'s; this reads OpenAI's error envelope
    for the message and the offending ``param``.
    """
    try:
        error: _WireError | None = _ErrorEnvelope.model_validate_json(response.content).error
    except ValidationError:
        error = None
    return status_error(
        response,
        provider,
        error.message if error else None,
        param=error.param if error else None,
        code=str(error.code) if error and error.code is not None else None,
    )


# -- the adapter ---------------------------------------------------------------


class OpenAICompatAdapter:
    """``ProviderAdapter`` and ``EmbeddingsAdapter`` over one pooled ``ProviderClient``.

    The client carries the base URL, default headers (including the configured
    key), default query parameters and the catalog's timeouts; each call
    narrows the timeouts to what is left of its deadline. The adapter owns the
    client and closes it in ``aclose``.
    """

    def __init__(self, name: str, client: ProviderClient, *, dialect: Dialect = OPENAI) -> None:
        self._name = name
        self._client = client
        self._dialect = dialect

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"OpenAICompatAdapter({self._name!r}, {self._client.base_url})"

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        return await self._post(req, deadline)

    async def embed(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        return await self._post(req, deadline)

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        if req.operation != "chat.completions":
            raise InvalidRequest(f"Streaming is not supported for {req.operation}", param="stream")
        forward_usage = _client_wants_usage(req.body)
        # The request is handed over, not kept: sse_events drops its body once sent.
        request = self._request(req, to_provider(req, stream=True), deadline)
        events = sse_events(self._client, request, self._map)
        del request
        async with contextlib.aclosing(events):
            async for event in events:
                if event.data == b"[DONE]":
                    return
                yield parse_chunk(event.data, self._name, forward_usage=forward_usage)

    async def list_models(self) -> tuple[str, ...]:
        return await list_names(
            self._client, self._dialect.models_path, self._map, self._name, items="data", key="id"
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, req: ProviderRequest, deadline: float | None) -> Completion:
        request = self._request(req, to_provider(req, stream=False), deadline)
        response = await send(self._client, request, self._map)
        return from_provider(response.content, self._name)

    def _map(self, response: httpx.Response) -> GatewayError:
        return _map_error(response, self._name)

    def _request(
        self, req: ProviderRequest, payload: bytes, deadline: float | None
    ) -> httpx.Request:
        headers = self._dialect.auth(req.provider_key) if req.provider_key else None
        return self._client.request(
            "POST",
            self._dialect.path(req.operation, req.provider_model),
            content=payload,
            headers=headers,
            deadline=deadline,
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
    headers = OPENAI.auth(api_key) if api_key else {}
    return OpenAICompatAdapter(name, new_client(entry, headers, transport=transport))


def build_azure(
    name: str,
    entry: ProviderEntry,
    api_key: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAICompatAdapter:
    """Adapter factory for catalog kind ``azure_openai`` (``base_url`` is the resource endpoint).

    Every call carries the entry's ``api_version`` as the ``api-version`` query
    parameter; a deployment's ``model`` in the catalog is the Azure deployment name.
    """
    headers = AZURE.auth(api_key) if api_key else {}
    params = {"api-version": entry.api_version} if entry.api_version else {}
    client = new_client(entry, headers, params=params, transport=transport)
    return OpenAICompatAdapter(name, client, dialect=AZURE)
