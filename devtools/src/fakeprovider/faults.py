"""Fault injection: what a request asks the fake provider to do wrong.

A fault is scripted per request, either by headers (``x-fake-<key>``, with ``_``
written as ``-``) or by a path prefix, so that a catalog deployment can point at a
failing base URL: ``http://host:port/fault/status=500,retry_after=1/v1``. Keys:

==================  ==========================================================
``status``          answer this HTTP status with an OpenAI error body
``delay_ms``        sleep this long before answering (before the first byte)
``reset``           ``1``: drop the connection without any response
``break_after``     streams: send this many SSE events, then drop the connection
``retry_after``     send ``Retry-After: <value>`` with the response
``chunk_delay_ms``  streams: sleep this long after each SSE event (so a client
                    can disconnect mid-stream; not in the shared contract)
``switch``          a named runtime toggle: the faults currently set for that
                    name on the ``Switchboard`` (none until set), so a test can
                    break and heal a deployment while the stack runs
==================  ==========================================================

Precedence, key by key: the switch's current spec, then the path spec, then
the headers. A switch is set over HTTP (``PUT /_fake/switches/<name>`` with
``{"spec": "status=500"}``, ``DELETE`` to heal; see ``app``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["FaultSpecError", "Faults", "Switchboard", "drop_connection", "split_fault_path"]

_PREFIX = "/fault/"
_KEYS = ("status", "delay_ms", "reset", "break_after", "retry_after", "chunk_delay_ms", "switch")
_HEADERS = tuple((key, "x-fake-" + key.replace("_", "-")) for key in _KEYS)


class FaultSpecError(ValueError):
    """A fault spec or header is malformed; the fake answers 400 with this message."""


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults requested for one request; the default instance requests none."""

    status: int | None = None
    delay_ms: int = 0
    reset: bool = False
    break_after: int | None = None
    retry_after: str | None = None
    chunk_delay_ms: int = 0

    @classmethod
    def from_request(
        cls,
        spec: str | None,
        headers: Mapping[str, str],
        switches: Mapping[str, str] | None = None,
    ) -> Faults:
        """Merge a named switch's spec, the path ``spec`` (``k=v,k=v``) and the ``x-fake-*`` headers.

        Raises ``FaultSpecError`` for unknown keys or non-numeric values.
        """
        raw: dict[str, str] = _parse_spec(spec) if spec else {}
        for key, header in _HEADERS:
            value = headers.get(header)
            if value is not None:
                raw[key] = value
        if not raw:
            return _NONE
        if (name := raw.pop("switch", None)) is not None:
            current = (switches or {}).get(name)
            raw = {**(_parse_spec(current) if current else {}), **raw}
        try:
            return cls(
                status=_int(raw, "status"),
                delay_ms=_int(raw, "delay_ms") or 0,
                reset=raw.get("reset", "0").strip().lower() in ("1", "true", "yes"),
                break_after=_int(raw, "break_after"),
                retry_after=raw.get("retry_after"),
                chunk_delay_ms=_int(raw, "chunk_delay_ms") or 0,
            )
        except ValueError as exc:
            raise FaultSpecError(f"bad fault value: {exc}") from exc


_NONE = Faults()


class Switchboard:
    """Named runtime toggles (``switch=<name>``): name -> the fault spec in force.

    A name never set, or cleared, means no faults. One per server, single event loop.
    """

    def __init__(self) -> None:
        self._specs: dict[str, str] = {}
        #: A live read-only view of the switches set, by name.
        self.specs: Mapping[str, str] = MappingProxyType(self._specs)

    def set(self, name: str, spec: str) -> None:
        """Set ``name`` to ``spec`` (``""`` heals it); ``FaultSpecError`` if invalid."""
        if not name:
            raise FaultSpecError("a switch needs a name")
        if "switch" in (_parse_spec(spec) if spec else {}):
            raise FaultSpecError("a switch's spec cannot name another switch")
        Faults.from_request(spec, {})  # validates values
        self._specs[name] = spec

    def clear(self, name: str | None = None) -> None:
        """Heal ``name``, or every switch when ``name`` is ``None``."""
        if name is None:
            self._specs.clear()
        else:
            self._specs.pop(name, None)


def split_fault_path(path: str) -> tuple[str | None, str]:
    """Split ``/fault/<spec>/v1/...`` into ``(spec, "/v1/...")``; other paths pass through."""
    if not path.startswith(_PREFIX):
        return None, path
    spec, sep, rest = path[len(_PREFIX) :].partition("/")
    if not sep:
        raise FaultSpecError(f"fault path {path!r} has no API path after the spec")
    return spec, "/" + rest


def _parse_spec(spec: str) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise FaultSpecError(f"bad fault spec item {item!r}; keys: {', '.join(_KEYS)}")
        raw[key] = value.strip()
    return raw


def _int(raw: Mapping[str, str], key: str) -> int | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    number = int(value)
    if number < 0:
        raise ValueError(f"{key} must be >= 0, got {number}")
    return number


async def drop_connection(send: Any, receive: Any) -> None:
    """Reset the client's TCP connection (RST, no response bytes after this point).

    ASGI has no message for "abort the connection", so this reaches for the
    transport that uvicorn's ``send`` is bound to (``RequestResponseCycle``) and
    aborts it with ``SO_LINGER`` 0. It then waits for the server to notice the
    disconnect, so that uvicorn does not try to complete the response. Under a
    server without such a transport (e.g. httpx's ``ASGITransport`` in unit
    tests) it raises ``ConnectionResetError`` instead, which the client sees as
    a failed request.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    # uvloop's TCPTransport implements the asyncio.Transport API without subclassing it.
    if transport is None or not callable(getattr(transport, "abort", None)):
        raise ConnectionResetError("fake provider: injected connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into an RST, which is what a crashed upstream looks like.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass
