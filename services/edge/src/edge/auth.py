"""API-key authentication against an in-memory cache: no database round trip per request.

A presented key is hashed with HMAC-SHA256 under ``GATEWAY_SECRET_KEY`` and
looked up in ``KeyCache``, a dict ``key_hash -> KeyEntry`` that ``keysync``
replaces wholesale on every reload (so a lookup never sees a half-built
cache). The cache holds revoked and expired keys too, so their callers get
a precise 401 instead of "unknown key".

Decisions, in order: no bearer -> 401; unknown hash -> 401; revoked -> 401;
expired -> 401; lacking the route's scope -> 403 (``require_scope``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from gateway_common.errors import PermissionDenied, Unauthenticated

__all__ = ["ALL_SCOPES", "KeyCache", "KeyEntry", "Scope", "hash_api_key", "require_scope"]

Scope = Literal["chat", "embeddings", "responses", "admin"]
ALL_SCOPES: Final[tuple[Scope, ...]] = ("chat", "embeddings", "responses", "admin")

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def hash_api_key(secret: bytes, key: str) -> str:
    """HMAC-SHA256 of the full key under ``secret``, hex: the only form a key is stored in."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What the edge knows about one key: who it is, what it may do, whether it still works."""

    key_id: str
    project_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    revoked: bool = False


def _mask(key: str) -> str:
    return f"{key[:6]}***{key[-4:]}" if len(key) > 12 else "***"


class KeyCache:
    """``key_hash -> KeyEntry``, swapped atomically by ``replace``.

    ``authenticate`` also notes when each key was last used; ``drain_last_used``
    hands those timestamps to the periodic sync, which writes them in one
    batch instead of one UPDATE per request.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._entries: dict[str, KeyEntry] = {}
        self._last_used: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def hash(self, key: str) -> str:
        """The stored form of ``key`` (see ``hash_api_key``)."""
        return hash_api_key(self._secret, key)

    def replace(self, entries: Iterable[tuple[str, KeyEntry]]) -> None:
        """Install a complete new set of ``(key_hash, entry)`` pairs."""
        self._entries = dict(entries)

    def authenticate(self, authorization: str | None, *, now: datetime | None = None) -> KeyEntry:
        """The entry for an ``Authorization: Bearer <key>`` header; ``Unauthenticated`` if none."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated(_MISSING)
        entry = self._entries.get(self.hash(key))
        if entry is None:
            raise Unauthenticated(f"Incorrect API key provided: {_mask(key)}.")
        if entry.revoked:
            raise Unauthenticated("This API key has been revoked.", code="api_key_revoked")
        now = now or datetime.now(UTC)
        if entry.expires_at is not None and entry.expires_at <= now:
            raise Unauthenticated("This API key has expired.", code="api_key_expired")
        self._last_used[entry.key_id] = now
        return entry

    def drain_last_used(self) -> dict[str, datetime]:
        """Key id -> last use since the previous drain (and forget them)."""
        used, self._last_used = self._last_used, {}
        return used


def require_scope(entry: KeyEntry, scope: Scope) -> KeyEntry:
    """``entry`` if it carries ``scope``; ``PermissionDenied`` (403) otherwise."""
    if scope not in entry.scopes:
        raise PermissionDenied(
            f"This API key lacks the '{scope}' scope required for this endpoint.",
            code="insufficient_scope",
        )
    return entry
