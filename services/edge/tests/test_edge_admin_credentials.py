"""Managed provider credentials: sealed at rest, never shown again, rewrapped on rotation."""

from __future__ import annotations

import pytest
from sqlmodel import select

from edge import EdgeSettings
from edge.credentials import CredentialCipher, CredentialUnreadable, SealedCredential, fingerprint
from edge.store import ProviderCredential, credentials_repo
from gateway_common import db

from .support import OPERATOR, SECRET, Edge, RouterServer, admin_settings, auth

pytestmark = pytest.mark.timeout(30)

OLD_SECRET = "the-retired-secret"
PROVIDER_KEY = "sk-proj-PLAINTEXT-provider-key-7f3a"


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(nats_url, db_url, router, previous_secret_keys=f" , {OLD_SECRET}")


# -- the cipher ---------------------------------------------------------------------------------


def test_seal_and_open() -> None:
    box = CredentialCipher(b"secret")
    sealed = box.seal(PROVIDER_KEY, project_id="p1", provider="openai")
    assert sealed.key_id == box.current_key_id and len(sealed.key_id) == 8
    assert PROVIDER_KEY.encode() not in sealed.blob and PROVIDER_KEY not in repr(sealed)
    assert box.open(sealed, project_id="p1", provider="openai") == PROVIDER_KEY
    again = box.seal(PROVIDER_KEY, project_id="p1", provider="openai")
    assert again.blob != sealed.blob  # fresh nonce every time


@pytest.mark.parametrize(
    ("project_id", "provider"), [("p2", "openai"), ("p1", "anthropic")], ids=["project", "provider"]
)
def test_ciphertext_is_bound_to_its_row(project_id: str, provider: str) -> None:
    box = CredentialCipher(b"secret")
    sealed = box.seal(PROVIDER_KEY, project_id="p1", provider="openai")
    with pytest.raises(CredentialUnreadable):
        box.open(sealed, project_id=project_id, provider=provider)


def test_tampering_and_unknown_keys_are_refused() -> None:
    box = CredentialCipher(b"secret")
    sealed = box.seal(PROVIDER_KEY, project_id="p", provider="x")
    flipped = SealedCredential(sealed.key_id, sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1]))
    with pytest.raises(CredentialUnreadable, match="authenticate"):
        box.open(flipped, project_id="p", provider="x")
    with pytest.raises(CredentialUnreadable, match="key id"):
        CredentialCipher(b"other").open(sealed, project_id="p", provider="x")


def test_rewrap_moves_to_the_current_key() -> None:
    old = CredentialCipher(b"old")
    sealed = old.seal(PROVIDER_KEY, project_id="p", provider="x")
    rotated = CredentialCipher(b"new", previous=[b"old"])
    assert rotated.current_key_id != old.current_key_id
    assert rotated.open(sealed, project_id="p", provider="x") == PROVIDER_KEY
    fresh = rotated.rewrap(sealed, project_id="p", provider="x")
    assert fresh is not None and fresh.key_id == rotated.current_key_id
    assert rotated.rewrap(fresh, project_id="p", provider="x") is None
    assert CredentialCipher(b"new").open(fresh, project_id="p", provider="x") == PROVIDER_KEY


def test_fingerprint() -> None:
    assert fingerprint("abc") == "sha256:ba7816bf8f01cfea"


# -- the admin API ------------------------------------------------------------------------------


async def _project_id(edge: Edge) -> str:
    return (await edge.client.get("/admin/projects", headers=auth())).json()["data"][0]["id"]


async def test_add_list_delete(edge: Edge) -> None:
    pid = await _project_id(edge)
    body = {"provider": "openai", "api_key": PROVIDER_KEY}
    created = await edge.client.post(
        f"/admin/projects/{pid}/credentials", json=body, headers=auth()
    )
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["last4"] == "7f3a" and shown["fingerprint"] == fingerprint(PROVIDER_KEY)
    assert shown["provider"] == "openai" and shown["base_url"] is None
    assert "api_key" not in shown and "ciphertext" not in shown
    listed = await edge.client.get(f"/admin/projects/{pid}/credentials", headers=OPERATOR)
    assert [c["id"] for c in listed.json()["data"]] == [shown["id"]]
    for resp in (created, listed):
        assert PROVIDER_KEY not in resp.text and PROVIDER_KEY[7:-4] not in resp.text

    async with db.make_sessionmaker(edge.app.state.edge.engine)() as session:
        row = (await session.exec(select(ProviderCredential))).one()
    assert PROVIDER_KEY.encode() not in row.ciphertext
    assert (
        CredentialCipher(SECRET.encode()).open(
            SealedCredential(row.key_id, row.ciphertext), project_id=pid, provider="openai"
        )
        == PROVIDER_KEY
    )

    replaced = await edge.client.post(
        f"/admin/projects/{pid}/credentials",
        json={"provider": "openai", "api_key": "sk-second-key-9999"},
        headers=auth(),
    )
    assert replaced.json()["id"] == shown["id"] and replaced.json()["last4"] == "9999"

    path = f"/admin/projects/{pid}/credentials/{shown['id']}"
    assert (await edge.client.delete(path, headers=auth())).status_code == 204
    gone = await edge.client.delete(path, headers=auth())
    assert gone.status_code == 404 and gone.json()["code"] == "credential_not_found"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8090/v1",
        "http://10.0.0.1/v1",
        "http://[fe80::1]/v1",
        "file:///etc/passwd",
    ],
)
async def test_unsafe_base_urls_are_refused_at_save_time(edge: Edge, base_url: str) -> None:
    pid = await _project_id(edge)
    body = {"provider": "custom", "api_key": PROVIDER_KEY, "base_url": base_url}
    resp = await edge.client.post(f"/admin/projects/{pid}/credentials", json=body, headers=auth())
    assert resp.status_code == 400 and resp.json()["code"] == "unsafe_base_url"
    assert PROVIDER_KEY not in resp.text
    listed = await edge.client.get(f"/admin/projects/{pid}/credentials", headers=auth())
    assert listed.json()["data"] == []


async def test_public_base_url_is_kept(edge: Edge) -> None:
    pid = await _project_id(edge)
    body = {"provider": "custom", "api_key": PROVIDER_KEY, "base_url": "https://93.184.215.14/v1"}
    resp = await edge.client.post(f"/admin/projects/{pid}/credentials", json=body, headers=auth())
    assert resp.status_code == 201 and resp.json()["base_url"] == "https://93.184.215.14/v1"


async def test_rewrap(edge: Edge) -> None:
    pid = await _project_id(edge)
    old = CredentialCipher(OLD_SECRET.encode())
    async with db.make_sessionmaker(edge.app.state.edge.engine)() as session:
        for provider in ("legacy-a", "legacy-b"):
            sealed = old.seal(PROVIDER_KEY, project_id=pid, provider=provider)
            await credentials_repo.save_credential(
                session=session,
                row=ProviderCredential(
                    project_id=pid,
                    provider=provider,
                    key_id=sealed.key_id,
                    ciphertext=sealed.blob,
                    fingerprint=fingerprint(PROVIDER_KEY),
                    last4="7f3a",
                ),
            )
        lost = CredentialCipher(b"forgotten").seal("x", project_id=pid, provider="lost")
        await credentials_repo.save_credential(
            session=session,
            row=ProviderCredential(
                project_id=pid,
                provider="lost",
                key_id=lost.key_id,
                ciphertext=lost.blob,
                fingerprint=fingerprint("x"),
                last4="x",
            ),
        )
    await edge.client.post(
        f"/admin/projects/{pid}/credentials",
        json={"provider": "current", "api_key": PROVIDER_KEY},
        headers=auth(),
    )
    forbidden = await edge.client.post("/admin/credentials/rewrap", headers=auth())
    assert forbidden.status_code == 403

    resp = await edge.client.post("/admin/credentials/rewrap", headers=OPERATOR)
    result = resp.json()
    current = CredentialCipher(SECRET.encode())
    assert result["key_id"] == current.current_key_id
    assert (result["rewrapped"], result["unchanged"], len(result["unreadable"])) == (2, 1, 1)
    async with db.make_sessionmaker(edge.app.state.edge.engine)() as session:
        rows = await credentials_repo.list_credentials(session=session, project_id=pid)
    for row in rows:
        if row.provider == "lost":
            continue
        assert row.key_id == current.current_key_id
        sealed = SealedCredential(row.key_id, row.ciphertext)
        assert current.open(sealed, project_id=pid, provider=row.provider) == PROVIDER_KEY
    again = (await edge.client.post("/admin/credentials/rewrap", headers=OPERATOR)).json()
    assert (again["rewrapped"], again["unchanged"]) == (0, 3)
