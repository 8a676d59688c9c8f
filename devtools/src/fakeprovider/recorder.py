"""What the fake provider received: a bounded log served at ``/_fake/requests``.

An entry is recorded when a request arrives and updated in place when its
answer ends, so an in-flight stream is visible and a stream whose client went
away before the end shows ``"disconnected": true`` (``"broken": true`` when the
fake itself dropped the connection, ``"completed": true`` when the answer ended).
Credential headers are never stored: ``authorization`` only says whether an
``Authorization`` header was sent, and ``bearer_sha256`` is the SHA-256 (hex) of
its bearer token, so a test can check *which* key arrived without the key
itself ever being kept or served.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordedRequest", "RequestLog"]

_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


@dataclass(slots=True)
class RecordedRequest:
    """One received request (serialised as JSON by orjson, field by field)."""

    method: str
    path: str
    headers: dict[str, str]
    authorization: bool
    bearer_sha256: str | None
    body: Any
    stream: bool = False
    status: int | None = None
    disconnected: bool = False
    broken: bool = False
    completed: bool = False
    #: When it arrived (``time.time()``, before any injected delay).
    received_at: float = field(default_factory=time.time)


def _fingerprint(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hashlib.sha256(token.strip().encode()).hexdigest()


class RequestLog:
    """The last ``maxlen`` requests, oldest first. Single event loop; no locking needed."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=maxlen)

    def record(self, method: str, path: str, headers: dict[str, str], body: Any) -> RecordedRequest:
        """Append a new entry and return it for the handler to update."""
        entry = RecordedRequest(
            method=method,
            path=path,
            headers={k: v for k, v in headers.items() if k not in _SECRET_HEADERS},
            authorization="authorization" in headers,
            bearer_sha256=_fingerprint(headers.get("authorization")),
            body=body,
        )
        self._entries.append(entry)
        return entry

    def snapshot(self) -> list[RecordedRequest]:
        """The entries, oldest first."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
