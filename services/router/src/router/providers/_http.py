"""HTTP plumbing every adapter shares: failure mapping, one call unary or streamed, SSE.

Adapters differ in what they send and how they read it, not in how they talk
HTTP, so this module (with ``_client``, the pooled client of one provider
entry) holds the parts that must behave the same for every provider:

- ``HTTPX_ERRORS`` and ``status_error``: transport failures (httpx's, and
  aiohttp's where the transport lets one through) and non-2xx
  statuses become our error types by one policy (429/5xx retryable, 408 a
  timeout, other 4xx the request's fault). Each adapter only parses its
  provider's error body and hands the message (and code) to ``status_error``.
  A provider's own refusal of a prompt longer than the model's context window
  (``context_overflow``: OpenAI's code ``context_length_exceeded`` or its
  "maximum context length" wording, Anthropic's "prompt is too long: M tokens
  > N maximum", Gemini's "input token count (M) exceeds the maximum number of
  tokens allowed (N)") becomes ``ContextLengthExceeded``, the 400 the edge
  answers for a prompt it counted too long itself; never retried.
- ``send`` and ``sse_events``: one call, unary or streamed, with the upstream
  response closed on every path out; ``list_names`` for model list endpoints.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any

import aiohttp
import httpx
import orjson

from gateway_common import tokens
from gateway_common.errors import (
    PROVIDER_OVERLOADED,
    ContextLengthExceeded,
    GatewayError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    map_exceptions,
)

from ._client import ProviderClient
from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "HTTPX_ERRORS",
    "OVERLOADED_STATUS",
    "ErrorMapper",
    "context_overflow",
    "json_object",
    "list_names",
    "overloaded",
    "retry_after",
    "send",
    "sse_events",
    "status_error",
]

#: Transport failures, most specific first (``map_exceptions`` takes the first match).
#: ``httpx_aiohttp`` turns aiohttp's errors into httpx's (a refused or reset
#: connection arrives as ``httpx.ConnectTimeout``, hence not a timeout here); its
#: other timeouts (``httpx.TimeoutException``) and anything aiohttp raises outside
#: its mapping (``aiohttp.ClientError``, ``TimeoutError``) are caught by the last
#: entries.
HTTPX_ERRORS: Mapping[type[BaseException], type[GatewayError]] = MappingProxyType(
    {
        httpx.ConnectTimeout: ProviderUnavailable,
        httpx.ConnectError: ProviderUnavailable,
        httpx.RemoteProtocolError: ProviderUnavailable,
        httpx.ReadError: ProviderUnavailable,
        httpx.ReadTimeout: ProviderTimeout,
        httpx.PoolTimeout: ProviderTimeout,
        httpx.WriteTimeout: ProviderTimeout,
        httpx.TimeoutException: ProviderTimeout,
        httpx.TransportError: ProviderUnavailable,
        TimeoutError: ProviderTimeout,
        aiohttp.ClientError: ProviderUnavailable,
    }
)

#: Provider 4xx statuses the client sees as they are, with the provider's message.
_PASSTHROUGH_STATUSES = frozenset({400, 404, 409, 413, 422})

#: Provider 4xx statuses a context-length refusal comes with (400 in practice).
_OVERFLOW_STATUSES = frozenset({400, 413, 422})
#: "M tokens > N maximum" (Anthropic) and "count (M) exceeds ... allowed (N)" (Gemini):
#: the provider's count and window, restated in OpenAI's words.
_COUNTED_OVERFLOWS = (
    re.compile(r"prompt is too long: (?P<prompt>\d+) tokens > (?P<window>\d+) maximum"),
    re.compile(
        r"input token count \((?P<prompt>\d+)\) exceeds the maximum number of tokens "
        r"allowed \((?P<window>\d+)\)"
    ),
)
#: Wordings of the same refusal that carry no numbers we restate (kept as said).
_OVERFLOW_WORDS = re.compile(
    r"maximum context length|context length exceeded|prompt is too long|"
    r"exceeds the maximum number of tokens",
    re.IGNORECASE,
)

#: Turns a provider's non-2xx response (body already read) into our error.
ErrorMapper = Callable[[httpx.Response], GatewayError]


def retry_after(headers: httpx.Headers) -> float | None:
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


def context_overflow(message: str | None, code: str | None = None) -> ContextLengthExceeded | None:
    """``ContextLengthExceeded`` if a provider's 4xx error (``message``, ``code``) says the
    prompt is longer than the model's context window, else None.

    Anthropic's and Gemini's counts are restated in OpenAI's message; OpenAI's own
    message (and any other provider's) is kept as the provider said it.
    """
    text = message or ""
    for pattern in _COUNTED_OVERFLOWS:
        found = pattern.search(text)
        if found is not None:
            window, prompt = int(found["window"]), int(found["prompt"])
            said = tokens.overflow_message(window, prompt, 0)
            return ContextLengthExceeded(said or text)
    if code == tokens.CONTEXT_LENGTH_EXCEEDED or _OVERFLOW_WORDS.search(text):
        return ContextLengthExceeded(
            text or "The prompt is longer than the model's maximum context length."
        )
    return None


def status_error(
    response: httpx.Response,
    provider: str,
    message: str | None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after_s: float | None = None,
) -> GatewayError:
    """Our error for a provider's non-2xx ``response`` whose body said ``message``.

    429 and 5xx are retryable, after the provider's Retry-After header or else
    ``retry_after_s`` (a delay the provider put in its body); Anthropic's 529
    "overloaded" is ``overloaded`` (503 ``provider_overloaded``); 408 is a timeout; other 4xx are the request's
    fault. For 400/404/409/413/422 the client sees the provider's
    status and message, except a context-length refusal (``context_overflow``):
    OpenAI's 400 ``context_length_exceeded``; anything else (401, 403, ...)
    becomes a 502 whose message names no secret. ``code`` is the provider's own
    error code, where its body has one.
    """
    status = response.status_code
    if status in _OVERFLOW_STATUSES and (overflow := context_overflow(message, code)):
        return overflow
    said = f": {message}" if message else ""
    if status == OVERLOADED_STATUS:
        return overloaded(f"Provider `{provider}` answered {status} (overloaded){said}", response)
    if status == 429 or status >= 500:
        wait = retry_after(response.headers)
        return ProviderUnavailable(
            f"Provider `{provider}` answered {status}{said}",
            retry_after=retry_after_s if wait is None else wait,
            # Keep 429 visible: when every attempt was rate limited the caller gets a 429.
            http_status=429 if status == 429 else None,
        )
    if status == 408:
        return ProviderTimeout(f"Provider `{provider}` timed out (408)")
    if status in _PASSTHROUGH_STATUSES:
        return ProviderRejected(
            message or f"Provider `{provider}` answered {status}",
            http_status=status,
            param=param,
        )
    return ProviderRejected(f"Provider `{provider}` refused the request ({status})")


#: Anthropic's "overloaded" status (the provider sheds load); any provider may send it.
OVERLOADED_STATUS = 529


def overloaded(message: str, response: httpx.Response | None = None) -> ProviderUnavailable:
    """The error of a provider that shed the call (its 529, or an ``overloaded_error`` event):
    retryable, 503 ``provider_overloaded``, so that when every attempt was shed the caller gets
    503 on ``/v1`` and Anthropic's 529 ``overloaded_error`` on ``/v1/messages``."""
    wait = None if response is None else retry_after(response.headers)
    return ProviderUnavailable(message, retry_after=wait, http_status=503, code=PROVIDER_OVERLOADED)


async def send(
    client: ProviderClient, request: httpx.Request, map_error: ErrorMapper
) -> httpx.Response:
    """Send ``request`` and read the whole answer; a non-2xx answer raises ``map_error``'s error."""
    with map_exceptions(HTTPX_ERRORS):
        response = await client.send(request)
    if not response.is_success:
        raise map_error(response)
    return response


async def sse_events(
    client: ProviderClient, request: httpx.Request, map_error: ErrorMapper
) -> AsyncGenerator[ServerSentEvent, None]:
    """Send ``request`` and yield the server-sent events of its answer as they arrive.

    A non-2xx answer is read and raised as ``map_error``'s error; a transport
    failure mid-stream is raised as ours. The upstream response is closed when
    the stream ends, fails, or the generator is closed early (``aclose()``,
    cancellation), so callers should hold it in ``contextlib.aclosing``.

    Callers hand ``request`` over without keeping it: once the answer's head is
    in, the request has been sent, and its body (the whole prompt, often tens
    of KiB) is not kept for the stream's life (issue 20 point 2). The response
    keeps a body-less copy of it as ``response.request``.
    """
    with map_exceptions(HTTPX_ERRORS):
        response = await client.send(request, stream=True)
    response.request = httpx.Request(
        request.method, request.url, headers=request.headers, extensions=request.extensions
    )
    del request
    try:
        if not response.is_success:
            with map_exceptions(HTTPX_ERRORS):
                await response.aread()
            raise map_error(response)
        decoder = SSEDecoder()
        raw_chunks = response.aiter_bytes()
        while True:
            with map_exceptions(HTTPX_ERRORS):
                raw = await anext(raw_chunks, None)
            for event in decoder.feed(raw) if raw is not None else decoder.flush():
                yield event
            if raw is None:
                return
    finally:
        await response.aclose()


def json_object(content: bytes, provider: str) -> dict[str, Any]:
    """``content`` parsed as a JSON object; anything else is the provider's failure."""
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise ProviderUnavailable(f"Provider `{provider}` sent a body that is not a JSON object")
    return obj


async def list_names(
    client: ProviderClient,
    path: str,
    map_error: ErrorMapper,
    provider: str,
    *,
    items: str,
    key: str,
    params: Mapping[str, str | int] | None = None,
) -> tuple[str, ...]:
    """``GET path`` and the ``key`` field of each object in the answer's ``items`` array."""
    with map_exceptions(HTTPX_ERRORS):
        response = await client.send(client.request("GET", path, deadline=None, params=params))
    if not response.is_success:
        raise map_error(response)
    listed = json_object(response.content, provider).get(items)
    return tuple(str(item[key]) for item in listed or () if isinstance(item, dict) and key in item)
