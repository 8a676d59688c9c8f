"""KeyCache decisions, and the same decisions over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.auth import KeyCache, KeyEntry, UnknownKey, require_scope
from gateway_common.errors import PermissionDenied, Unauthenticated

from .support import KEYS, Edge, auth

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def cache() -> KeyCache:
    cache = KeyCache(b"secret")
    cache.replace(
        [
            (cache.hash("sk-good"), KeyEntry("k1", "p1", frozenset({"chat"}))),
            (cache.hash("sk-revoked"), KeyEntry("k2", "p1", frozenset({"chat"}), revoked=True)),
            (
                cache.hash("sk-expired"),
                KeyEntry("k3", "p1", frozenset(), NOW - timedelta(seconds=1)),
            ),
            (cache.hash("sk-later"), KeyEntry("k4", "p1", frozenset(), NOW + timedelta(days=1))),
        ]
    )
    return cache


def test_valid_key(cache: KeyCache) -> None:
    assert cache.authenticate("Bearer sk-good", now=NOW).key_id == "k1"
    assert cache.authenticate("bearer  sk-later", now=NOW).key_id == "k4"
    assert cache.drain_last_used() == {"k1": NOW, "k4": NOW}
    assert cache.drain_last_used() == {}


@pytest.mark.parametrize(
    ("header", "code", "fragment"),
    [
        (None, "invalid_api_key", "Missing Bearer token."),
        ("Basic abc", "invalid_api_key", "Missing Bearer token."),
        ("Bearer ", "invalid_api_key", "Missing Bearer token."),
        (
            "Bearer sk-unknown-key-123",
            "invalid_api_key",
            "Incorrect API key provided: sk-unk***-123.",
        ),
        ("Bearer sk-revoked", "api_key_revoked", "revoked"),
        ("Bearer sk-expired", "api_key_expired", "expired"),
    ],
)
def test_refused(cache: KeyCache, header: str | None, code: str, fragment: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        cache.authenticate(header, now=NOW)
    assert info.value.code == code and info.value.http_status == 401
    assert fragment in info.value.message
    assert cache.drain_last_used() == {}


def test_hash_is_hmac_of_the_full_key(cache: KeyCache) -> None:
    assert cache.hash("sk-good") != KeyCache(b"other").hash("sk-good")
    assert len(cache.hash("sk-good")) == 64


class _Table:
    """A key table for ``KeyCache(load=...)``: the hashes it holds, and each lookup asked."""

    def __init__(self, rows: dict[str, KeyEntry]) -> None:
        self.rows = rows
        self.asked: list[str] = []

    async def load(self, key_hash: str) -> KeyEntry | None:
        self.asked.append(key_hash)
        return self.rows.get(key_hash)


async def test_a_key_the_cache_does_not_hold_yet_is_read_from_the_table_once() -> None:
    table = _Table({})
    cache = KeyCache(b"secret", load=table.load)
    table.rows[cache.hash("sk-new")] = KeyEntry("k9", "p1", frozenset({"chat"}))
    assert (await cache.resolve("sk-new", now=NOW)).key_id == "k9"
    assert (await cache.resolve("sk-new", now=NOW)).key_id == "k9"
    assert table.asked == [cache.hash("sk-new")]  # the second answer came from the cache
    assert cache.drain_last_used() == {"k9": NOW}


async def test_a_key_the_table_lacks_too_is_refused_and_not_asked_again_at_once() -> None:
    table = _Table({})
    cache = KeyCache(b"secret", load=table.load)
    for _ in range(3):
        with pytest.raises(UnknownKey):
            await cache.resolve("sk-nope", now=NOW)
    assert table.asked == [cache.hash("sk-nope")]


async def test_a_revoked_key_read_on_a_miss_is_refused_as_revoked() -> None:
    table = _Table({})
    cache = KeyCache(b"secret", load=table.load)
    table.rows[cache.hash("sk-gone")] = KeyEntry("k8", "p1", frozenset(), revoked=True)
    with pytest.raises(Unauthenticated) as info:
        await cache.resolve("sk-gone", now=NOW)
    assert info.value.code == "api_key_revoked"


def test_scope() -> None:
    entry = KeyEntry("k", "p", frozenset({"embeddings"}))
    assert require_scope(entry, "embeddings") is entry
    with pytest.raises(PermissionDenied):
        require_scope(entry, "chat")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "invalid_api_key"),
        ({"authorization": "Bearer sk-nope-nope-nope"}, "invalid_api_key"),
        (auth("revoked"), "api_key_revoked"),
        (auth("expired"), "api_key_expired"),
    ],
)
async def test_refused_over_http(edge: Edge, headers: dict[str, str], code: str) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=b"{}", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.json()["error"]["code"] == code
    assert KEYS["all"][0] not in resp.text


async def test_auth_precedes_body_checks(edge: Edge) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=b"{not json")
    assert resp.status_code == 401
