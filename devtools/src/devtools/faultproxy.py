"""A TCP fault proxy on loopback for the network-fault drill (d03) and its tests.

``FaultProxy`` listens on a loopback port and forwards every connection to a
target; faults are switched at run time with ``set`` (from any thread)::

    latency_s   each chunk waits this long before it is forwarded (both ways, order kept)
    reset       new connections and every open one are reset (RST), until switched off
    blackhole   "both", "up" (client -> target) or "down" (target -> client): connections
                stay open but the bytes of that direction are dropped; a connection that
                lost bytes is reset when the blackhole is switched off (its stream is torn,
                as a TCP stack ends a connection whose data it could not deliver)
    slice_after close each connection once this many bytes went down (target -> client)

``ProxyThread`` runs proxies on an event loop of their own in a daemon thread,
for synchronous drivers (the drills, whose clients run their own loops).
Modelled on Toxiproxy's toxics (latency, reset_peer, timeout, limit_data).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["Blackhole", "FaultProxy", "Faults", "ProxyThread", "proxy_thread"]

Blackhole = Literal["", "both", "up", "down"]
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults in force; the default is none (a plain forwarder)."""

    latency_s: float = 0.0
    reset: bool = False
    blackhole: Blackhole = ""
    slice_after: int | None = None


@dataclass(eq=False, slots=True)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    down_bytes: int = 0
    torn: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """One loopback listener forwarding to ``target`` (host, port) under ``faults``."""

    def __init__(self, target: tuple[str, int], *, name: str = "proxy") -> None:
        self.name = name
        self.target = target
        self.faults = Faults()
        self.connections = 0
        """Connections accepted so far."""
        self.dropped_bytes = 0
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url_netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FaultProxy:
        """Listen on 127.0.0.1:``port`` (0: a free one)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._tear(conn)
        if self._server is not None:
            await self._server.wait_closed()

    def set(self, **changes: object) -> None:
        """Switch faults (``Faults`` field names); the rest stay as they are. Any thread."""
        self._switch(replace(self.faults, **changes))  # type: ignore[arg-type]

    def clear(self) -> None:
        """No fault in force. Any thread."""
        self._switch(Faults())

    def _switch(self, faults: Faults) -> None:
        loop = self._loop
        if loop is None or _in_loop(loop):
            self._apply(faults)
        else:
            asyncio.run_coroutine_threadsafe(self._apply_async(faults), loop).result(10)

    async def _apply_async(self, faults: Faults) -> None:
        self._apply(faults)

    def _apply(self, faults: Faults) -> None:
        healed = self.faults.blackhole and not faults.blackhole
        self.faults = faults
        for conn in list(self._conns):
            if faults.reset or (healed and conn.torn):
                self._tear(conn)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Conn(writer)
        if self.faults.reset:
            self._tear(conn)
            return
        try:
            up_reader, conn.upstream = await asyncio.open_connection(*self.target)
        except OSError:
            self._tear(conn)
            return
        self._conns.add(conn)
        conn.tasks = [
            asyncio.create_task(self._pipe(reader, conn.upstream, conn, "up")),
            asyncio.create_task(self._pipe(up_reader, writer, conn, "down")),
        ]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._close(conn)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        conn: _Conn,
        direction: Literal["up", "down"],
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(_CHUNK):
                if self.faults.latency_s > 0:
                    await asyncio.sleep(self.faults.latency_s)
                if self.faults.blackhole in ("both", direction):
                    conn.torn = True
                    self.dropped_bytes += len(data)
                    continue
                limit = self.faults.slice_after if direction == "down" else None
                if limit is not None:
                    data = data[: max(0, limit - conn.down_bytes)]
                dst.write(data)
                conn.down_bytes += len(data) if direction == "down" else 0
                await dst.drain()
                if limit is not None and conn.down_bytes >= limit:
                    return

    def _close(self, conn: _Conn) -> None:
        """Close both sides cleanly (FIN) once one side ended."""
        self._conns.discard(conn)
        for task in conn.tasks:
            task.cancel()
        for writer in (conn.client, conn.upstream):
            if writer is not None:
                writer.close()

    def _tear(self, conn: _Conn) -> None:
        """Reset both sides (RST: SO_LINGER 0, then abort)."""
        self._conns.discard(conn)
        for task in conn.tasks:
            task.cancel()
        for writer in (conn.client, conn.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class ProxyThread:
    """An event loop in a daemon thread hosting proxies; ``add`` one, ``stop`` them all."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faultproxy", daemon=True
        )
        self._thread.start()
        self.proxies: dict[str, FaultProxy] = {}

    def add(self, name: str, target: tuple[str, int], port: int = 0) -> FaultProxy:
        """Start a proxy called ``name`` to ``target`` on this thread's loop."""
        proxy = FaultProxy(target, name=name)
        asyncio.run_coroutine_threadsafe(proxy.start(port), self._loop).result(10)
        self.proxies[name] = proxy
        return proxy

    def clear(self) -> None:
        """Switch every proxy's faults off."""
        for proxy in self.proxies.values():
            proxy.clear()

    def stop(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(proxy.aclose(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def proxy_thread() -> Iterator[ProxyThread]:
    """A ``ProxyThread``, stopped (every proxy closed) on exit."""
    thread = ProxyThread()
    try:
        yield thread
    finally:
        thread.stop()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
