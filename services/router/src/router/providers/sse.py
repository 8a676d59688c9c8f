"""Incremental Server-Sent Events decoding over raw bytes.

Network reads split an event anywhere, even inside a ``data:`` line, so the
decoder buffers until a line ends and dispatches an event at each blank line
(the SSE rule). It works on bytes so JSON payloads reach the caller without a
decode/encode round trip. Comment lines (``:`` keep-alives) and fields other
than ``data`` and ``event`` are ignored; lines end with ``\\n`` or ``\\r\\n``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its ``event`` name ("" when unnamed) and its data."""

    event: str
    data: bytes


class SSEDecoder:
    """Feed it byte chunks as they arrive; it returns the events they complete."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return every event completed by them, in order."""
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start:end]).removesuffix(b"\r")
            start = end + 1
            if event := self._line(line):
                events.append(event)
        del self._buffer[:start]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of input: return the last event if the stream ended without a blank line."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            line, self._buffer = bytes(self._buffer).removesuffix(b"\r"), bytearray()
            if event := self._line(line):
                events.append(event)
        if event := self._line(b""):
            events.append(event)
        return events

    def _line(self, line: bytes) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(self._event, b"\n".join(self._data))
            self._data, self._event = [], ""
            return event
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        return None
