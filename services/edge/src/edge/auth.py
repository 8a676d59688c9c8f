"""API-key authentication against an in-memory cache: no database round trip per request.

A presented key is hashed with HMAC-SHA256 under ``GATEWAY_SECRET_KEY`` and
looked up in ``KeyCache``, a dict ``key_hash -> KeyEntry``: one HMAC and one
dict probe, never a scan and never a comparison of the secret itself (an
attacker cannot steer an HMAC digest byte by byte, so the dict's equality
check leaks nothing useful). ``keysync`` replaces the dict wholesale on a
full reload (a lookup never sees a half-built cache) and ``put``/``remove``
single entries when ``keys.changed.v1`` names a key. The cache holds revoked
and expired keys too, so their callers get a precise 401 instead of
"unknown key"; expiry is checked against the clock on every lookup.

The key comes from ``Authorization: Bearer`` or, when that header is absent,
``x-api-key`` (Anthropic's clients; ``presented_key``).

A key just created at one edge reaches the others' caches by ``keys.changed.v1``,
which a loaded machine may deliver late; until then that key would work at one
edge and 401 at another. So ``resolve`` (what the request paths call) looks an
unknown hash up in the table once (``load``: one indexed query on the unique
``key_hash``) and caches what it finds. A hash the table does not hold either is
remembered for ``MISS_TTL_S`` (at most ``MAX_MISSES`` of them), so a caller
repeating an unknown key, or a passthrough caller's provider key, costs one query
per ``MISS_TTL_S``, not one per request. A random key cannot be presented before it
exists, so remembering a miss never hides a new key.

Decisions, in order: no bearer -> 401 "Missing Bearer token."; unknown hash
-> 401; revoked -> 401; expired -> 401; lacking the route's scope -> 403
naming the scope (``require_scope``); a project-scoped route of another
project -> 403 ``WRONG_PROJECT`` (the admin API's ``Principal.require_project``).

Keys are ``sk-sy-`` followed by 43 URL-safe characters (256 random bits),
made by ``generate_api_key``.

An unknown hash raises ``UnknownKey`` (a ``Unauthenticated``), the one failure
after which ``edge.passthrough`` may still admit the bearer as a caller's own
provider key; revoked and expired keys never get that chance.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from gateway_common.errors import PermissionDenied, Unauthenticated

from .pipeline.ratelimit import RateLimits

__all__ = [
    "ALL_SCOPES",
    "IMPLIED_BY",
    "KEY_PREFIX",
    "MAX_MISSES",
    "MISS_TTL_S",
    "WRONG_PROJECT",
    "KeyCache",
    "KeyEntry",
    "KeyLoader",
    "Scope",
    "UnknownKey",
    "bearer_token",
    "generate_api_key",
    "hash_api_key",
    "presented_key",
    "require_scope",
]

Scope = Literal["chat", "embeddings", "responses", "admin", "collections:read", "collections:write"]
#: Every scope a key may carry. ``collections:read`` (list, show, query collections and
#: their documents) and ``collections:write`` (create, delete, add and delete documents;
#: it implies ``collections:read``) are granted only when named: keys made before they
#: existed keep exactly the scopes they were given, so they reach no collection.
ALL_SCOPES: Final[tuple[Scope, ...]] = (
    "chat",
    "embeddings",
    "responses",
    "admin",
    "collections:read",
    "collections:write",
)
#: A scope that also grants others (``require_scope`` accepts it in their place).
IMPLIED_BY: Final[dict[Scope, Scope]] = {"collections:read": "collections:write"}

#: Every key ``generate_api_key`` makes starts with this (recognizable in logs and scanners).
KEY_PREFIX: Final = "sk-sy-"
#: Seed 001's message for a token used on another project's route.
WRONG_PROJECT: Final = "Token does not belong to this project."
_MISSING = "Missing Bearer token."
#: How long a hash the table did not hold is answered from memory (see the module docstring).
MISS_TTL_S: Final = 10.0
#: How many such hashes are remembered; past it the memory starts afresh.
MAX_MISSES: Final = 10_000

#: Reads the entry of one key hash from the table (None: no such key, or the table
#: could not be read: the key stays unknown, as without the lookup).
KeyLoader = Callable[[str], Awaitable["KeyEntry | None"]]


def generate_api_key() -> str:
    """A new key: ``KEY_PREFIX`` + 256 random bits, URL-safe base64 (49 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; ``Unauthenticated`` if none."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(_MISSING)
    return token


def presented_key(authorization: str | None, x_api_key: str | None) -> str:
    """The key a request presents: its ``Authorization: Bearer`` token, else its
    ``x-api-key`` header (how Anthropic's clients send it); ``Unauthenticated`` if neither."""
    if authorization is None and x_api_key is not None and x_api_key.strip():
        return x_api_key.strip()
    return bearer_token(authorization)


def hash_api_key(secret: bytes, key: str) -> str:
    """HMAC-SHA256 of the full key under ``secret``, hex: the only form a key is stored in."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What the edge knows about one key: who it is, what it may do, whether it still works.

    ``provider_key`` is set only on the principal of a bearer-passthrough call
    (``edge.passthrough``): the bearer itself, the caller's provider key. It is
    hidden from repr and never part of the key cache.
    """

    key_id: str
    project_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    revoked: bool = False
    provider_key: str | None = field(default=None, repr=False, compare=False)
    #: The key's own rate limits (None: none).
    rate_limits: RateLimits | None = None
    #: The models this key may call (None: every model).
    allowed_models: frozenset[str] | None = None

    @property
    def passthrough(self) -> bool:
        """Whether this is a bearer-passthrough caller rather than a gateway key."""
        return self.provider_key is not None


def _mask(key: str) -> str:
    return f"{key[:6]}***{key[-4:]}" if len(key) > 12 else "***"


class UnknownKey(Unauthenticated):
    """The bearer is not a gateway key at all (as opposed to a revoked or expired one)."""

    @classmethod
    def of(cls, key: str) -> UnknownKey:
        """The 401 for ``key``, which it names only masked (as OpenAI does)."""
        return cls(f"Incorrect API key provided: {_mask(key)}.")


class KeyCache:
    """``key_hash -> KeyEntry``, swapped atomically by ``replace``, patched by ``put``/``remove``.

    ``authenticate`` also notes when each key was last used; ``drain_last_used``
    hands those timestamps to the periodic sync, which writes them in one
    batch instead of one UPDATE per request.
    """

    def __init__(self, secret: bytes, *, load: KeyLoader | None = None) -> None:
        self._secret = secret
        self._load = load
        self._entries: dict[str, KeyEntry] = {}
        self._hash_by_id: dict[str, str] = {}
        self._last_used: dict[str, datetime] = {}
        #: key_hash -> monotonic time until which the table is not asked about it again.
        self._misses: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def hash(self, key: str) -> str:
        """The stored form of ``key`` (see ``hash_api_key``)."""
        return hash_api_key(self._secret, key)

    def replace(self, entries: Iterable[tuple[str, KeyEntry]]) -> None:
        """Install a complete new set of ``(key_hash, entry)`` pairs."""
        new = dict(entries)
        self._hash_by_id = {entry.key_id: key_hash for key_hash, entry in new.items()}
        self._entries = new

    def put(self, key_hash: str, entry: KeyEntry) -> None:
        """Add or update one key (its id's previous entry, if any, is dropped first)."""
        self.remove(entry.key_id)
        self._entries[key_hash] = entry
        self._hash_by_id[entry.key_id] = key_hash

    def remove(self, key_id: str) -> None:
        """Forget the key with id ``key_id`` (no-op when unknown)."""
        key_hash = self._hash_by_id.pop(key_id, None)
        if key_hash is not None:
            self._entries.pop(key_hash, None)

    def authenticate(self, authorization: str | None, *, now: datetime | None = None) -> KeyEntry:
        """The entry for an ``Authorization: Bearer <key>`` header; ``Unauthenticated`` if none."""
        return self.lookup(bearer_token(authorization), now=now)

    def lookup(self, key: str, *, now: datetime | None = None) -> KeyEntry:
        """The entry of a working ``key``; ``UnknownKey`` when unknown, ``Unauthenticated``
        when revoked or expired."""
        entry = self._entries.get(self.hash(key))
        if entry is None:
            raise UnknownKey.of(key)
        if entry.revoked:
            raise Unauthenticated("This API key has been revoked.", code="api_key_revoked")
        now = now or datetime.now(UTC)
        if entry.expires_at is not None and entry.expires_at <= now:
            raise Unauthenticated("This API key has expired.", code="api_key_expired")
        self._last_used[entry.key_id] = now
        return entry

    async def resolve(self, key: str, *, now: datetime | None = None) -> KeyEntry:
        """As ``lookup``, but a key the cache does not hold yet is read from the table
        (``load``) before it is refused (see the module docstring)."""
        try:
            return self.lookup(key, now=now)
        except UnknownKey:
            if self._load is None or not await self._found(self.hash(key)):
                raise
        return self.lookup(key, now=now)

    async def _found(self, key_hash: str) -> bool:
        """Whether the table holds ``key_hash`` (now cached); misses are remembered."""
        clock = time.monotonic()
        if self._misses.get(key_hash, 0.0) > clock:
            return False
        assert self._load is not None
        entry = await self._load(key_hash)
        if entry is None:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[key_hash] = clock + MISS_TTL_S
            return False
        self.put(key_hash, entry)
        return True

    def by_id(self, key_id: str, *, now: datetime | None = None) -> KeyEntry:
        """The entry of working key ``key_id`` (a console session's key); ``Unauthenticated``
        when it is gone, revoked or expired."""
        key_hash = self._hash_by_id.get(key_id)
        entry = self._entries.get(key_hash) if key_hash is not None else None
        now = now or datetime.now(UTC)
        if (
            entry is None
            or entry.revoked
            or (entry.expires_at is not None and entry.expires_at <= now)
        ):
            raise Unauthenticated("The key of this console session no longer works.")
        return entry

    def drain_last_used(self) -> dict[str, datetime]:
        """Key id -> last use since the previous drain (and forget them)."""
        used, self._last_used = self._last_used, {}
        return used


def require_scope(entry: KeyEntry, scope: Scope) -> KeyEntry:
    """``entry`` if it carries ``scope`` (or the scope ``IMPLIED_BY`` names); 403 otherwise."""
    if scope not in entry.scopes and IMPLIED_BY.get(scope) not in entry.scopes:
        raise PermissionDenied(
            f"This API key lacks the '{scope}' scope required for this endpoint.",
            code="insufficient_scope",
        )
    return entry
