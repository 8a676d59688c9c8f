"""Bearer passthrough (seed 004): the official SDK with a provider key as its ``api_key``.

``mock-passthrough`` is served only by ``fake-passthrough``, a catalog provider
with ``byok_passthrough: true`` (``tests/integration/catalog.yaml``). The fake
provider records the SHA-256 of the bearer it received, never the bearer.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from devtools.stack import Stack
from gateway_common.db import sync_url
from tests.integration.helpers import fake_requests, ledger_entry, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def _sdk(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)


def _revoked_gateway_key(stack: Stack, base_url: str) -> str:
    assert stack.config.admin_token is not None
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    with httpx.Client(base_url=base_url, timeout=30, headers=operator) as http:
        project = http.post("/admin/projects", json={"name": f"pt-{secrets.token_hex(4)}"})
        pid = project.json()["id"]
        created = http.post(f"/admin/projects/{pid}/keys", json={"name": "r", "scopes": ["chat"]})
        key: str = created.json()["key"]
        assert http.post(f"/admin/projects/{pid}/keys/{created.json()['id']}/revoke").is_success
    return key


def test_a_provider_key_as_the_bearer_reaches_only_a_passthrough_provider(
    stack: Stack, base_url: str, fake_provider_url: str
) -> None:
    provider_key = "sk-provider-abc-" + secrets.token_urlsafe(24)
    marker = uuid.uuid4().hex[:12]
    messages = [{"role": "user", "content": f"passthrough {marker}"}]
    with _sdk(base_url, provider_key) as client:
        unary = client.chat.completions.with_raw_response.create(
            model="mock-passthrough",
            messages=messages,  # type: ignore[arg-type]
        )
        assert marker in (unary.parse().choices[0].message.content or "")
        chunks = list(
            client.chat.completions.create(
                model="mock-passthrough",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
        )
        assert chunks
        answer = client.responses.create(model="mock-passthrough", input=f"responses {marker}")
        assert marker in answer.output_text

        # Not a passthrough model: the same bearer is just an unknown key.
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="mock-chat",
                messages=messages,  # type: ignore[arg-type]
            )
        # The gateway keeps no state for a caller without a project.
        with pytest.raises(openai.BadRequestError, match="previous_response_id"):
            client.responses.create(
                model="mock-passthrough", input="again", previous_response_id=answer.id
            )
        with pytest.raises(openai.AuthenticationError):
            client.models.list()

    revoked_key = _revoked_gateway_key(stack, base_url)
    with (
        _sdk(base_url, revoked_key) as revoked,
        pytest.raises(openai.AuthenticationError, match="revoked"),
    ):
        revoked.chat.completions.create(
            model="mock-passthrough",
            messages=messages,  # type: ignore[arg-type]
        )

    fingerprint = hashlib.sha256(provider_key.encode()).hexdigest()
    assert [r["bearer_sha256"] for r in fake_requests(fake_provider_url, marker)] == [
        fingerprint
    ] * 3

    entry, _ = poll(
        lambda: ledger_entry(sync_url(stack.database_url("billing")), unary.headers["x-request-id"])
    )
    assert entry.byok and entry.project_id == "byok-passthrough"

    # Never stored or logged: not in any service log, SQLite file or the NATS store.
    assert _files_containing(stack.data_dir, provider_key.encode()) == []
