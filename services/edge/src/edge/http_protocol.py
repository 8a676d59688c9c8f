"""The edge's HTTP/1.1 protocol: uvicorn's httptools protocol plus a request-head timeout.

uvicorn times out only idle keep-alive connections (``timeout_keep_alive``, re-armed after
a response); nothing bounds how long a client may take to send a request head, so a
slow-loris client that trickles a partial head holds its connection (and a file
descriptor) for ever. ``HeadTimeoutProtocol`` arms a timer when a connection is made
and when a request's first byte is parsed, and disarms it once the head is complete:

    connect / first byte of a request ──▶ timer (``header_timeout_s``)
      ├─ headers complete  ──▶ timer off (the body and the response are not bounded here)
      └─ timer fires       ──▶ ``408`` + ``connection: close`` (no response in flight),
                               else just close; the app never sees the request

A request httptools cannot parse (a bare CR or LF in a header, say) is answered ``400``
like uvicorn does, but with the API's error object instead of uvicorn's plain text.

uvicorn has no maintained option for this (Kludex/uvicorn#157, ``--timeout-request-start``,
is open), hence the subclass. ``protocol_class`` binds the timeout from the settings.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadTimeoutProtocol", "protocol_class"]

log = logging.getLogger(__name__)

_REASONS = {400: b"Bad Request", 408: b"Request Timeout"}


def _error_response(status: int, code: str, message: str, url: bytes) -> bytes:
    """A whole ``connection: close`` response carrying the API's error object.

    The request is refused before the app sees it, so the API is judged by the path read
    so far: Anthropic's shape under ``/v1/messages``, OpenAI's everywhere else.
    """
    if url.startswith(b"/v1/messages"):
        body = orjson.dumps(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        )
    else:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        body = orjson.dumps({"error": error})
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n"
    ) % (status, _REASONS[status], len(body))
    return head + body


class HeadTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request head is too slow."""

    header_timeout_s: float = 10.0

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # else the connection's first request: its timer runs
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse, in the API's error shape."""
        self._disarm_head_timer()
        url = getattr(self, "url", b"")
        self.transport.write(_error_response(400, "invalid_http_request", msg, url))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Nothing is being answered on this connection: say why it is closed.
            message = f"request head not complete within {self.header_timeout_s:g} s"
            url = getattr(self, "url", b"")
            self.transport.write(_error_response(408, "request_timeout", message, url))
        log.info("closing a connection: request head not complete in %.1f s", self.header_timeout_s)
        self.transport.close()


def protocol_class(header_timeout_s: float) -> type[HeadTimeoutProtocol]:
    """A ``HeadTimeoutProtocol`` subclass with ``header_timeout_s`` bound (uvicorn's ``http=``)."""
    return type("EdgeHttpProtocol", (HeadTimeoutProtocol,), {"header_timeout_s": header_timeout_s})
