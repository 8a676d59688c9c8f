"""The pooled HTTP client of one provider entry: ``ProviderClient``, made by ``new_client``.

Adapters build ``httpx.Request`` objects and read ``httpx.Response`` objects,
and the network is an ``httpx.AsyncBaseTransport``: aiohttp's connection pool
(``httpx_aiohttp``) in production, ``httpx.MockTransport`` replaying recorded
provider payloads in tests. What sits between them is deliberately small.
``httpx.AsyncClient`` spends more CPU per request than the transport does
(merging URL, headers, params and cookies, auth and redirect flows, event
hooks); a provider entry needs none of that per request, so ``ProviderClient``
keeps the entry's base URL, default headers and query, and timeouts, and hands
each request straight to the transport.

What it sends is what ``httpx.AsyncClient`` built: the same URL joining
(``base_url`` + relative path, default query merged with the request's), the
same default headers (``accept``, ``accept-encoding``, ``connection``,
``user-agent``) overlaid by the adapter's and the entry's, the per-request
timeouts as the ``timeout`` extension. Differences, on purpose: no cookie jar
(a provider's ``Set-Cookie`` is not replayed on later calls, which may be other
tenants'), redirects are never followed (the client was built without
following them either), and ``accept-encoding`` is ``gzip, deflate`` whatever
optional decoders happen to be installed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.request import getproxies

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import ProviderTimeout

__all__ = ["ProviderClient", "new_client", "request_timeout"]

#: Seconds an idle pooled connection is kept (httpx's default keep-alive expiry).
_KEEPALIVE_S = 5.0

#: The headers httpx.AsyncClient puts on every request unless told otherwise.
_DEFAULT_HEADERS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "user-agent": f"python-httpx/{httpx.__version__}",
}

#: Joined URLs kept per client; paths come from the catalog, so this is never reached
#: in practice, but a bound keeps a surprising caller from growing it without end.
_MAX_CACHED_URLS = 1024


def _capped(limit: float | None, left: float) -> float:
    return left if limit is None else min(limit, left)


def request_timeout(configured: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """``configured`` with every phase capped at the time left before ``deadline``.

    Raises ``ProviderTimeout`` when the deadline has already passed.
    """
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


class ProviderClient:
    """Requests to one provider entry over one transport (its connection pool).

    ``request`` builds a request relative to ``base_url``; ``send`` sends it
    and, unless ``stream``, reads the whole body (a streamed response must be
    closed by the caller: ``aclose()``). Transport exceptions are httpx's and
    are left to the caller to map. ``aclose`` closes the transport.
    """

    __slots__ = ("_base", "_headers", "_params", "_timeout", "_transport", "_urls")

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        base = httpx.URL(base_url)
        # As httpx does: a base URL always ends in "/", and paths are joined under it.
        self._base = (
            base if base.raw_path.endswith(b"/") else base.copy_with(raw_path=base.raw_path + b"/")
        )
        self._headers = httpx.Headers(_DEFAULT_HEADERS)
        self._headers.update(headers)
        self._params = httpx.QueryParams(params)
        self._timeout = timeout
        self._transport = transport
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    @property
    def base_url(self) -> httpx.URL:
        return self._base

    def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float | None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Request:
        """``method path`` (relative to the base URL) with the entry's defaults, and this
        call's ``headers`` over them; timeouts narrowed to ``deadline`` (``request_timeout``)."""
        timeout = request_timeout(self._timeout, deadline)
        if headers:
            merged = self._headers.copy()
            merged.update(headers)
        else:
            merged = self._headers
        return httpx.Request(
            method,
            self._url(path, params),
            headers=merged,
            content=content,
            extensions={"timeout": timeout.as_dict()},
        )

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """The transport's answer to ``request``; its body already read unless ``stream``."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def aclose(self) -> None:
        """Close the connection pool; no request may be sent afterwards."""
        await self._transport.aclose()

    def _url(self, path: str, params: Mapping[str, str | int] | None) -> httpx.URL:
        key = (path, tuple((k, str(v)) for k, v in params.items()) if params else ())
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(path)
            if url.is_relative_url:
                raw_path = self._base.raw_path + url.raw_path.lstrip(b"/")
                url = self._base.copy_with(raw_path=raw_path)
            if params or self._params:
                url = url.copy_merge_params(self._params.merge(params))
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()
            self._urls[key] = url
        return url


def new_client(
    entry: ProviderEntry,
    headers: Mapping[str, str],
    *,
    params: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderClient:
    """The client of one provider entry: its base URL, timeouts and pool size.

    ``headers`` are the adapter's defaults (content type, configured key);
    the entry's own ``headers`` are applied over them, so an operator can pin
    e.g. an API version header. ``params`` go on every request's query
    string. ``transport`` replaces the network (tests); without one requests
    go out through aiohttp (``_network``). Call it with or without a running
    event loop: the aiohttp session is made on the first request.
    """
    merged = httpx.Headers({"content-type": "application/json", **headers})
    merged.update(entry.headers)  # case-insensitively: "Anthropic-Version" replaces ours
    return ProviderClient(
        entry.base_url,
        merged,
        params=params,
        timeout=httpx.Timeout(entry.read_timeout_s, connect=entry.connect_timeout_s),
        transport=transport or _network(entry.max_connections),
    )


def _network(max_connections: int) -> AiohttpTransport:
    """HTTP/1.1 over one aiohttp connection pool of ``max_connections``, TLS verified.

    Each request's timeouts apply (connect, read between bytes, pool wait), so
    deadlines narrow them. A response closed before its body ended closes its
    connection (aiohttp never pools one mid-body), which is how a cancelled
    call ends the upstream request. Proxies named by the environment
    (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured as httpx does; aiohttp
    looks them up per request, so only when some are set.
    """

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=_KEEPALIVE_S, ssl=transport.ssl_context
        )
        return aiohttp.ClientSession(connector=connector, trust_env=bool(getproxies()))

    limits = httpx.Limits(max_connections=max_connections, keepalive_expiry=_KEEPALIVE_S)
    transport = AiohttpTransport(limits=limits, client=session)
    return transport
