"""KeyCache decisions, and the same decisions over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.auth import KeyCache, KeyEntry, require_scope
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
