"""The admin API: who may call it, its error shape, projects and API keys end to end."""

from __future__ import annotations

import pytest

from edge import EdgeSettings

from .support import (
    ADMIN_TOKEN,
    KEYS,
    OPERATOR,
    Edge,
    RouterServer,
    admin_settings,
    auth,
    eventually,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def settings(nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
    return admin_settings(nats_url, db_url, router)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def new_project(edge: Edge, name: str, **fields: object) -> dict:
    resp = await edge.client.post(
        "/admin/projects", json={"name": name, **fields}, headers=OPERATOR
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def new_key(
    edge: Edge, project_id: str, headers: dict[str, str] = OPERATOR, **fields: object
) -> dict:
    body = {"name": "k", "scopes": ["chat"], **fields}
    resp = await edge.client.post(f"/admin/projects/{project_id}/keys", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_admin_error(
    resp, status: int, error: str | None = None, code: str | None = None
) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["ok"] is False and set(body) == {"ok", "error", "code"}
    if error is not None:
        assert body["error"] == error
    if code is not None:
        assert body["code"] == code


async def test_openapi_describes_the_admin_api(edge: Edge) -> None:
    spec = (await edge.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/admin/projects",
        "/admin/projects/{project_id}",
        "/admin/projects/{project_id}/keys",
        "/admin/projects/{project_id}/keys/{key_id}",
        "/admin/projects/{project_id}/keys/{key_id}/revoke",
        "/admin/projects/{project_id}/credentials",
        "/admin/projects/{project_id}/credentials/{credential_id}",
        "/admin/credentials/rewrap",
    ):
        assert path in paths, path
    assert "AdminErrorBody" in spec["components"]["schemas"]
    assert "403" in paths["/admin/projects"]["post"]["responses"]


async def test_project_lifecycle(edge: Edge) -> None:
    project = await new_project(edge, "acme", type="channel", settings={"tier": "gold"})
    assert project["type"] == "channel" and project["settings"] == {"tier": "gold"}
    pid = project["id"]
    listed = (await edge.client.get("/admin/projects", headers=OPERATOR)).json()["data"]
    assert {p["name"] for p in listed} == {"test", "acme"}
    shown = await edge.client.get(f"/admin/projects/{pid}", headers=OPERATOR)
    assert shown.json() == project
    patched = await edge.client.patch(
        f"/admin/projects/{pid}", json={"settings": {"tier": "silver"}}, headers=OPERATOR
    )
    assert patched.status_code == 200 and patched.json()["settings"] == {"tier": "silver"}
    assert patched.json()["name"] == "acme"
    assert (await edge.client.delete(f"/admin/projects/{pid}", headers=OPERATOR)).status_code == 204
    assert_admin_error(
        await edge.client.get(f"/admin/projects/{pid}", headers=OPERATOR),
        404,
        code="project_not_found",
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x", "type": "nonsense"}, "type"),
        ({"name": ""}, "name"),
        ({"name": "x", "bogus": 1}, "bogus"),
    ],
)
async def test_invalid_project_bodies(edge: Edge, body: dict, fragment: str) -> None:
    resp = await edge.client.post("/admin/projects", json=body, headers=OPERATOR)
    assert_admin_error(resp, 400)
    assert fragment in resp.json()["error"]


async def test_duplicate_project_name(edge: Edge) -> None:
    await new_project(edge, "twice")
    resp = await edge.client.post("/admin/projects", json={"name": "twice"}, headers=OPERATOR)
    assert_admin_error(resp, 409, code="duplicate_name")


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "Missing Bearer token."),
        ({"authorization": "Basic abc"}, 401, "Missing Bearer token."),
        (bearer("not-the-token"), 401, None),
        (auth("revoked"), 401, "This API key has been revoked."),
        (auth("expired"), 401, "This API key has expired."),
        (auth("embed"), 403, "This API key lacks the 'admin' scope required for this endpoint."),
    ],
)
async def test_who_may_call(
    edge: Edge, headers: dict[str, str], status: int, error: str | None
) -> None:
    resp = await edge.client.get("/admin/projects", headers=headers)
    assert_admin_error(resp, status, error)
    assert ADMIN_TOKEN not in resp.text and KEYS["all"][0] not in resp.text


async def test_project_admin_is_confined_to_its_project(edge: Edge) -> None:
    other = await new_project(edge, "other")
    test_id = (await edge.client.get("/admin/projects", headers=auth())).json()["data"]
    assert [p["name"] for p in test_id] == ["test"]
    own = test_id[0]["id"]
    assert (await edge.client.get(f"/admin/projects/{own}", headers=auth())).status_code == 200
    for method, path in (
        ("GET", f"/admin/projects/{other['id']}"),
        ("PATCH", f"/admin/projects/{other['id']}"),
        ("GET", f"/admin/projects/{other['id']}/keys"),
        ("POST", f"/admin/projects/{other['id']}/keys"),
        ("GET", f"/admin/projects/{other['id']}/credentials"),
        ("GET", "/admin/projects/00000000-0000-0000-0000-000000000000"),
    ):
        resp = await edge.client.request(
            method, path, headers=auth(), json={"name": "k", "scopes": ["chat"]}
        )
        assert_admin_error(resp, 403, "Token does not belong to this project.", "wrong_project")
        assert other["id"] not in resp.text
    for method, path in (("POST", "/admin/projects"), ("DELETE", f"/admin/projects/{own}")):
        resp = await edge.client.request(method, path, headers=auth(), json={"name": "mine"})
        assert_admin_error(resp, 403, code="operator_only")
    created = await new_key(edge, own, headers=auth(), scopes=["embeddings"])
    assert created["project_id"] == own


async def test_key_lifecycle(edge: Edge) -> None:
    pid = (await new_project(edge, "keys"))["id"]
    created = await new_key(
        edge, pid, name="ci", description="for CI", scopes=["chat", "embeddings", "chat"]
    )
    key, kid = created["key"], created["id"]
    assert key.startswith("sk-sy-") and len(key) == 49
    assert created["prefix"] == key[:12] and created["scopes"] == ["chat", "embeddings"]
    assert created["expires_at"] is None and created["revoked_at"] is None
    assert "key_hash" not in created

    assert (await edge.client.get("/v1/models", headers=bearer(key))).status_code == 200
    listed = await edge.client.get(f"/admin/projects/{pid}/keys", headers=OPERATOR)
    shown = await edge.client.get(f"/admin/projects/{pid}/keys/{kid}", headers=OPERATOR)
    for resp in (listed, shown):
        assert resp.status_code == 200
        assert key not in resp.text and key[12:] not in resp.text and "hash" not in resp.text
    assert [k["id"] for k in listed.json()["data"]] == [kid]
    assert shown.json()["description"] == "for CI"

    revoked = await edge.client.post(f"/admin/projects/{pid}/keys/{kid}/revoke", headers=OPERATOR)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = await edge.client.get("/v1/models", headers=bearer(key))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_revoked"

    assert (
        await edge.client.delete(f"/admin/projects/{pid}/keys/{kid}", headers=OPERATOR)
    ).status_code == 204
    refused = await edge.client.get("/v1/models", headers=bearer(key))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert_admin_error(
        await edge.client.get(f"/admin/projects/{pid}/keys/{kid}", headers=OPERATOR),
        404,
        code="api_key_not_found",
    )


async def test_key_expires_on_the_clock(edge: Edge) -> None:
    pid = (await new_project(edge, "short"))["id"]
    created = await new_key(edge, pid, expires_in=1)
    assert created["expires_at"] is not None
    assert (await edge.client.get("/v1/models", headers=bearer(created["key"]))).status_code == 200

    async def expired() -> bool:
        resp = await edge.client.get("/v1/models", headers=bearer(created["key"]))
        return resp.status_code == 401 and resp.json()["error"]["code"] == "api_key_expired"

    await eventually(expired, within=3)


async def test_key_of_another_project_is_not_found(edge: Edge) -> None:
    a = (await new_project(edge, "a"))["id"]
    b = (await new_project(edge, "b"))["id"]
    kid = (await new_key(edge, a))["id"]
    for method, path in (
        ("GET", f"/admin/projects/{b}/keys/{kid}"),
        ("POST", f"/admin/projects/{b}/keys/{kid}/revoke"),
        ("DELETE", f"/admin/projects/{b}/keys/{kid}"),
    ):
        assert_admin_error(await edge.client.request(method, path, headers=OPERATOR), 404)
    shown = await edge.client.get(f"/admin/projects/{a}/keys/{kid}", headers=OPERATOR)
    assert shown.json()["revoked_at"] is None


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"expires_in": 60, "expires_at": "2999-01-01T00:00:00Z"}, "not both"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "future"),
        ({"expires_at": "2999-01-01T00:00:00"}, "time zone"),
        ({"expires_in": 0}, "expires_in"),
        ({"scopes": ["chat", "root"]}, "scopes"),
        ({"scopes": []}, "scopes"),
    ],
)
async def test_invalid_key_bodies(edge: Edge, fields: dict, fragment: str) -> None:
    pid = (await new_project(edge, "bad-keys"))["id"]
    body = {"name": "k", "scopes": ["chat"], **fields}
    resp = await edge.client.post(f"/admin/projects/{pid}/keys", json=body, headers=OPERATOR)
    assert_admin_error(resp, 400)
    assert fragment in resp.json()["error"]


async def test_deleting_a_project_stops_its_keys(edge: Edge) -> None:
    pid = (await new_project(edge, "doomed"))["id"]
    key = (await new_key(edge, pid))["key"]
    assert (await edge.client.get("/v1/models", headers=bearer(key))).status_code == 200
    assert (await edge.client.delete(f"/admin/projects/{pid}", headers=OPERATOR)).status_code == 204
    assert (await edge.client.get("/v1/models", headers=bearer(key))).status_code == 401


async def test_wrong_scope_on_v1_names_the_scope(edge: Edge) -> None:
    pid = (await new_project(edge, "scoped"))["id"]
    key = (await new_key(edge, pid, scopes=["embeddings"]))["key"]
    resp = await edge.client.post("/v1/chat/completions", json={}, headers=bearer(key))
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == (
        "This API key lacks the 'chat' scope required for this endpoint."
    )
    missing = await edge.client.post("/v1/chat/completions", json={})
    assert missing.status_code == 401
    assert missing.json()["error"]["message"] == "Missing Bearer token."
