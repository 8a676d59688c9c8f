"""``python -m devtools.bench.paced``: a tiny upstream that paces its stream (the streams scenario).

Any ``POST`` is answered ``200 text/event-stream`` (chunked, keep-alive) with an
OpenAI chat stream: the role chunk at once, then ``--chunks`` content chunks,
one per tick of a single ``--interval-ms`` clock shared by every open stream,
then a finish chunk, a usage chunk and ``data: [DONE]``. Each content chunk's
text is ``@<send time> `` (``time.monotonic()``, which is the system-wide
``CLOCK_MONOTONIC`` on Linux), so a client on the same machine reads how far
behind the upstream each chunk arrived, whatever sat in between.

One timer for all streams (not one sleep per stream) keeps the upstream's own
CPU small next to the gateway's: at 2,000 streams and 20 ms it writes 100,000
chunks a second. ``GET /healthz`` answers 200 for the readiness wait.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import cast

import uvloop

__all__ = ["main"]

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)
_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
_PREFIX = b'data: {"id":"chatcmpl-paced","object":"chat.completion.chunk","created":1700000000,"model":"bench-paced","choices":['
_ROLE = (
    _PREFIX + b'{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
)
_CONTENT = _PREFIX + b'{"index":0,"delta":{"content":"@%.6f "},"finish_reason":null}]}\n\n'
_TAIL = (
    _PREFIX
    + b'{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    + _PREFIX
    + b'],"usage":{"prompt_tokens":14,"completion_tokens":%d,"total_tokens":%d}}\n\n'
    + b"data: [DONE]\n\n"
)


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Stream:
    """One open response: how many content chunks it still has to send."""

    __slots__ = ("left", "transport")

    def __init__(self, transport: asyncio.Transport, chunks: int) -> None:
        self.transport = transport
        self.left = chunks


class _Upstream:
    """The shared tick: every ``interval_s`` each open stream gets its next chunk."""

    def __init__(self, chunks: int, interval_s: float) -> None:
        self.chunks = chunks
        self.interval_s = interval_s
        self.open: set[_Stream] = set()

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        tail = _chunk(_TAIL % (self.chunks, self.chunks + 14)) + b"0\r\n\r\n"
        while True:
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            done = []
            for stream in self.open:
                if stream.transport.is_closing():
                    done.append(stream)
                    continue
                stream.transport.write(_chunk(_CONTENT % time.monotonic()))
                stream.left -= 1
                if stream.left == 0:
                    stream.transport.write(tail)
                    done.append(stream)
            self.open.difference_update(done)


class _Connection(asyncio.Protocol):
    """HTTP/1.1 just enough for a POST with ``content-length`` or a GET."""

    def __init__(self, upstream: _Upstream) -> None:
        self._upstream = upstream
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._answer(head.startswith(b"get"))

    def _answer(self, health: bool) -> None:
        assert self._transport is not None
        if health:
            self._transport.write(_HEALTH)
            return
        self._transport.write(_HEAD + _chunk(_ROLE))
        self._upstream.open.add(_Stream(self._transport, self._upstream.chunks))


async def _serve(port: int, chunks: int, interval_s: float) -> None:
    upstream = _Upstream(chunks, interval_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(upstream), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await upstream.tick()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed."""
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.paced", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream (200)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="between chunks (20)")
    args = parser.parse_args(argv)
    uvloop.run(_serve(args.port, args.chunks, args.interval_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
