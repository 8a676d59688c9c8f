"""BYOK (the caller's provider key goes to the provider only, billed as BYOK) and cancellation.

The fake provider records a SHA-256 fingerprint of the bearer it was given, never
the bearer, so these tests can prove which key arrived without storing it either.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from devtools.stack import Stack
from gateway_common.db import sync_url
from tests.integration.helpers import fake_requests, ledger_entry, poll

pytestmark = pytest.mark.integration


def _marker() -> str:
    return uuid.uuid4().hex[:12]


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_provider_key_reaches_only_the_provider_and_is_billed_as_byok(
    stack: Stack, base_url: str, api_key: str, fake_provider_url: str
) -> None:
    user_key = "sk-proj-byok-" + secrets.token_urlsafe(24)
    marker = _marker()
    messages = [{"role": "user", "content": f"my own key {marker}"}]
    client = openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key=api_key,
        max_retries=0,
        timeout=30,
        default_headers={"X-Provider-Key": user_key},
    )
    with client:
        unary = client.chat.completions.with_raw_response.create(
            model="mock-chat",
            messages=messages,  # type: ignore[arg-type]
        )
        unary.parse()
        streamed = client.chat.completions.with_raw_response.create(
            model="mock-chat",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        list(streamed.parse())
        embedded = client.embeddings.with_raw_response.create(
            model="mock-embed", input=f"embed with my key {marker}"
        )
        embedded.parse()
    managed = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mock-chat", "messages": [{"role": "user", "content": f"managed {marker}"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=20,
    )
    assert managed.status_code == 200

    fingerprint = hashlib.sha256(user_key.encode()).hexdigest()
    seen = fake_requests(fake_provider_url, marker)
    assert [r["bearer_sha256"] for r in seen] == [fingerprint] * 3 + [None]

    db_url = sync_url(stack.database_url("billing"))
    for reply, byok in ((unary, True), (streamed, True), (embedded, True), (managed, False)):
        entry, _ = poll(lambda r=reply: ledger_entry(db_url, r.headers["x-request-id"]))
        assert bool(entry.byok) is byok

    # Never stored or logged: not in any service log, SQLite file or the NATS store.
    assert _files_containing(stack.data_dir, user_key.encode()) == []


def test_client_disconnect_cancels_the_upstream_request(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    marker = _marker()
    words = " ".join(f"w{i}" for i in range(60))  # ~62 chunks at 200 ms: a 12 s stream
    with openai_client.chat.completions.create(
        model="mock-slow-stream",
        messages=[{"role": "user", "content": f"{marker} {words}"}],
        stream=True,
    ) as stream:
        for index, _ in enumerate(stream):
            if index == 2:
                break
    closed_at = time.monotonic()

    def disconnected() -> dict[str, Any] | None:
        (entry,) = fake_requests(fake_provider_url, marker)
        return entry if entry["disconnected"] else None

    entry = poll(disconnected, timeout=5)
    assert time.monotonic() - closed_at < 5
    assert entry["stream"] and not entry["completed"]
