"""Over a real socket: the edge's request-head timeout frees slow-loris connections.

Regression test for the dr19b finding (a partial request head kept its connection open
past 90 s). The server is uvicorn with the edge's own configuration
(``DrainingServer.config_for``, hence ``edge.http_protocol``) in front of a tiny app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn

from edge.drain import DrainingServer

from .support import eventually, free_port

pytestmark = pytest.mark.timeout(30)

_TIMEOUT_S = 0.5
_GET = b"GET /ping HTTP/1.1\r\nHost: edge\r\n\r\n"


async def _app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
    )  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"pong"})  # type: ignore[operator]


@pytest.fixture
async def port() -> AsyncIterator[int]:
    port = free_port()
    config = DrainingServer.config_for(
        _app, host="127.0.0.1", port=port, grace_s=1.0, header_timeout_s=_TIMEOUT_S
    )
    config.lifespan = "off"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _closed_after(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took (5 s cap)."""
    start = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout=5.0)
    return data, time.monotonic() - start


async def test_partial_head_is_answered_408_and_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
    await writer.drain()
    data, waited = await _closed_after(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data
    body = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"  # OpenAI's error object
    assert _TIMEOUT_S * 0.8 <= waited < _TIMEOUT_S + 2.0


async def test_trickled_head_is_closed_at_the_deadline_not_reset_per_byte(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    closed_at = None
    for byte in b"GET /ping HTTP/1.1\r\nHost: edge\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(bytes([byte]))
        try:
            await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), timeout=_TIMEOUT_S / 5)
        except TimeoutError:
            continue
        except ConnectionError:
            data = b""
        closed_at = time.monotonic() - start
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
        break
    writer.close()
    assert closed_at is not None, "the trickling client was never disconnected"
    assert closed_at < _TIMEOUT_S + 2.0


async def test_silent_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data, waited = await _closed_after(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert waited < _TIMEOUT_S + 2.0


async def test_complete_requests_are_served_and_keep_alive_is_not_cut(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(3):
        writer.write(_GET)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readexactly(4), timeout=5.0) == b"pong"
        # Idle between requests longer than the head timeout: the keep-alive (5 s) governs.
        await asyncio.sleep(_TIMEOUT_S * 1.5)
    writer.close()


async def test_unparsable_head_is_a_400_in_the_api_shape(port: int) -> None:
    for path, anthropic in ((b"/v1/chat/completions", False), (b"/v1/messages", True)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: edge\r\nX-Provider-Key: a\rb\r\n\r\n")
        await writer.drain()
        data, _ = await _closed_after(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 400 "), data
        body = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
        assert (body["type"] == "error") if anthropic else ("code" in body["error"]), body


async def test_second_request_head_on_a_kept_alive_connection_is_bounded(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_GET)
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"pong"), timeout=5.0)
    writer.write(b"GET /ping HTTP/1.1\r\nHo")
    await writer.drain()
    data, waited = await _closed_after(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert waited < _TIMEOUT_S + 2.0
