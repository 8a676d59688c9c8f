"""The production HTTP client (``_http.new_client`` over aiohttp) against a real server.

Every other adapter test replaces the network with ``httpx.MockTransport``;
these run the OpenAI-compatible adapter over loopback against the dev fake
provider (its own process), whose ``/fault/<spec>/v1`` prefix scripts the
failures. They pin what the failover and the stream contract rely on: the
error type of every transport failure, timeouts between bytes before and
during a stream, deadlines, and that closing a stream early ends the upstream
request.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import (
    GatewayError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    map_exceptions,
)
from gateway_common.testing import free_port, service_process, wait_for
from router.providers._http import HTTPX_ERRORS
from router.providers.base import ProviderRequest
from router.providers.openai_compat import OpenAICompatAdapter, build

pytestmark = pytest.mark.timeout(20)

_BODY = {"model": "m", "messages": [{"role": "user", "content": "Hello there, provider"}]}


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dev fake provider on a free port, as its own process."""
    port = free_port()
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    with service_process("fakeprovider", {"FAKE_PROVIDER_PORT": str(port)}, log_path=log) as proc:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            assert time.monotonic() < deadline, "fake provider did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def adapter(base_url: str, *, read_s: float = 5.0) -> AsyncIterator[OpenAICompatAdapter]:
    entry = ProviderEntry(
        kind="openai", base_url=base_url, read_timeout_s=read_s, connect_timeout_s=0.5
    )
    built = build("fake", entry, "sk-network-test")
    try:
        yield built
    finally:
        await built.aclose()


def _request(*, stream: bool = False) -> ProviderRequest:
    return ProviderRequest("chat.completions", {**_BODY, "stream": stream}, provider_model="m")


async def _requests(fake_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        return list((await client.get(f"{fake_url}/_fake/requests")).json()["requests"])


async def test_a_unary_call_and_a_stream_go_through(fake_url: str) -> None:
    async with adapter(f"{fake_url}/v1") as provider:
        completion = await provider.complete(_request(), deadline=None)
        chunks = [chunk async for chunk in provider.stream(_request(stream=True), deadline=None)]
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert chunks[-1].usage is not None and all(c.data for c in chunks[:-1])


async def test_closing_a_stream_early_ends_the_upstream_request(fake_url: str) -> None:
    async with adapter(f"{fake_url}/fault/chunk_delay_ms=300/v1") as provider:
        stream = provider.stream(_request(stream=True), deadline=None)
        await anext(stream)
        await stream.aclose()

    async def disconnected() -> bool | None:
        last = (await _requests(fake_url))[-1]
        return True if last["disconnected"] and not last["completed"] else None

    await wait_for(disconnected, timeout_s=5)


async def test_an_open_stream_does_not_keep_its_request_body(fake_url: str) -> None:
    """Once the answer's head is in, the sent request (its body is the whole prompt) is
    freed, not held for the stream's life (issue 20 point 2)."""
    sent: list[weakref.ref[httpx.Request]] = []
    async with adapter(f"{fake_url}/fault/chunk_delay_ms=100/v1") as provider:
        build_request = provider._request

        def tracked(*args: Any, **kwargs: Any) -> httpx.Request:
            request = build_request(*args, **kwargs)
            sent.append(weakref.ref(request))
            return request

        provider._request = tracked  # type: ignore[method-assign]
        stream = provider.stream(_request(stream=True), deadline=None)
        try:
            await anext(stream)
            gc.collect()
            assert len(sent) == 1 and sent[0]() is None
        finally:
            await stream.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_silent_provider_times_out_after_the_read_timeout(
    fake_url: str, stream: bool
) -> None:
    async with adapter(f"{fake_url}/fault/delay_ms=3000/v1", read_s=0.3) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            if stream:
                [chunk async for chunk in provider.stream(_request(stream=True), deadline=None)]
            else:
                await provider.complete(_request(), deadline=None)
    assert time.monotonic() - started < 2


async def test_a_stream_that_stalls_midway_times_out_after_its_first_chunks(
    fake_url: str,
) -> None:
    received = 0
    async with adapter(f"{fake_url}/fault/chunk_delay_ms=3000/v1", read_s=0.3) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            async for _ in provider.stream(_request(stream=True), deadline=None):
                received += 1
    assert received == 1
    assert time.monotonic() - started < 2


async def test_the_call_deadline_narrows_the_configured_read_timeout(fake_url: str) -> None:
    async with adapter(f"{fake_url}/fault/delay_ms=3000/v1", read_s=30) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await provider.complete(_request(), deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("spec", "stream", "expected"),
    [
        ("reset=1", False, ProviderUnavailable),
        ("reset=1", True, ProviderUnavailable),
        ("break_after=2", True, ProviderUnavailable),
        ("status=503", False, ProviderUnavailable),
        ("status=400", True, ProviderRejected),
    ],
)
async def test_failures_become_our_errors(
    fake_url: str, spec: str, stream: bool, expected: type[GatewayError]
) -> None:
    async with adapter(f"{fake_url}/fault/{spec}/v1") as provider:
        with pytest.raises(expected) as caught:
            if stream:
                [chunk async for chunk in provider.stream(_request(stream=True), deadline=None)]
            else:
                await provider.complete(_request(), deadline=None)
    assert "sk-network-test" not in str(caught.value)


async def test_a_refused_connection_is_retryable() -> None:
    async with adapter(f"http://127.0.0.1:{free_port()}/v1") as provider:
        with pytest.raises(ProviderUnavailable):
            await provider.complete(_request(), deadline=None)


async def test_a_connect_that_hangs_ends_at_the_connect_timeout() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # never accepted: once the queue is full, SYNs are dropped
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            async with adapter(f"http://127.0.0.1:{port}/v1") as provider:
                started = time.monotonic()
                with pytest.raises(ProviderUnavailable):
                    await provider.complete(_request(), deadline=None)
            assert 0.4 < time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ClientPayloadError("cut"), ProviderUnavailable),
        (aiohttp.ServerDisconnectedError(), ProviderUnavailable),
        (TimeoutError(), ProviderTimeout),
        (httpx.TimeoutException("total"), ProviderTimeout),
    ],
)
def test_aiohttp_errors_that_slip_through_the_transport_are_mapped(
    raised: Exception, expected: type[GatewayError]
) -> None:
    with pytest.raises(expected), map_exceptions(HTTPX_ERRORS):
        raise raised
