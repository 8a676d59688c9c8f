"""The fault proxy against a real loopback echo server: each fault, switched at run time."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator

import pytest

from devtools.faultproxy import FaultProxy, proxy_thread

pytestmark = pytest.mark.timeout(20)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        if data.startswith(b"burst"):
            writer.write(b"x" * 100)
        else:
            writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    running = await FaultProxy(target).start()
    yield running
    await running.aclose()
    server.close()
    await server.wait_closed()


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), 5)


async def test_forwards_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    writer.close()
    assert proxy.connections == 1


async def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.set(latency_s=0.2)
    started = time.monotonic()
    assert await _roundtrip(reader, writer) == b"ping"
    assert time.monotonic() - started >= 0.4  # once up, once down
    writer.close()


async def test_reset_tears_open_and_new_connections(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    proxy.set(reset=True)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(reader, writer)
    reader, writer = await _open(proxy)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(reader, writer)
    proxy.clear()
    reader, writer = await _open(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    writer.close()


async def test_blackhole_drops_bytes_then_resets_the_torn_connection(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.set(blackhole="both")
    writer.write(b"ping")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    assert proxy.dropped_bytes == 4
    proxy.clear()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(reader, writer)
    reader, writer = await _open(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    writer.close()


async def test_blackhole_one_way_keeps_the_other(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.set(blackhole="down")
    writer.write(b"ping")  # reaches the echo server; its answer is dropped
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    deadline = time.monotonic() + 5
    while proxy.dropped_bytes < 4:  # the echo's answer reached the proxy and was dropped
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    writer.close()


async def test_slice_close_after_n_bytes_down(proxy: FaultProxy) -> None:
    proxy.set(slice_after=30)
    reader, writer = await _open(proxy)
    writer.write(b"burst")
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 5)  # until EOF
    assert received == b"x" * 30
    writer.close()


def test_proxy_thread_is_driven_from_another_thread() -> None:
    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(1024):
                self.request.sendall(data)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with proxy_thread() as thread:
            proxy = thread.add("echo", ("127.0.0.1", server.server_address[1]))
            proxy.set(latency_s=0.01)  # switched from this thread, applied on the proxy's loop
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                client.sendall(b"ping")
                assert client.recv(4) == b"ping"
            assert proxy.faults.latency_s == 0.01
        server.shutdown()
