"""Managed credentials and the generation_context setting reach the router call, from memory.

The router is the scripted gRPC servicer (``support.ScriptedRouter``): what
it records is exactly the ``CompleteRequest`` the edge sent. A real billing
process answers the budget admission every call goes through.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import event

from edge import EdgeSettings, create_app
from edge.credentials import CredentialCipher, fingerprint
from edge.projects import ManagedCredential
from edge.router_client import CallContext
from edge.store import ProviderCredential, credentials_repo, repo
from gateway_common import db

from . import billing_process
from .billing_process import billing_answers
from .support import Edge, auth, chunk_event, eventually, route_event, seed_keys, usage_event

pytestmark = pytest.mark.timeout(30)

OPERATOR = "operator-token-for-credential-tests"
PROVIDER_KEY = "sk-managed-INJECT-0123456789abcdef"
# Module fixtures: this module's own NATS and billing process.
nats_url = billing_process.nats_url
billing = billing_process.billing

CHAT = {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def settings(settings: EdgeSettings, billing: None) -> EdgeSettings:
    await billing_answers(settings.nats_url)
    return settings.model_copy(update={"admin_token": SecretStr(OPERATOR)})


@pytest.fixture
async def edge(settings: EdgeSettings) -> AsyncIterator[Edge]:
    key_ids = await seed_keys(settings.resolved_database_url())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            yield Edge(app, client, key_ids)


@pytest.fixture
async def edge_b(settings: EdgeSettings, edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    """A second edge replica on the same database and NATS."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge-b") as client:
            yield client


OP = {"authorization": f"Bearer {OPERATOR}"}


async def _project(edge: Edge) -> dict[str, Any]:
    return dict((await edge.client.get("/admin/projects", headers=auth())).json()["data"][0])


async def test_a_stored_credential_rides_on_every_call_and_never_in_logs(
    edge: Edge,
    edge_b: httpx.AsyncClient,
    router: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pid = (await _project(edge))["id"]
    resp = await edge.client.post(
        f"/admin/projects/{pid}/credentials",
        json={"provider": "fake", "api_key": PROVIDER_KEY},
        headers=OP,
    )
    assert resp.status_code == 201, resp.text
    assert PROVIDER_KEY not in resp.text

    # This edge at once; the other one through credentials.changed.v1.
    assert (await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())).is_success
    sent = router.servicer.calls[-1][0]
    assert [(c.provider, c.api_key) for c in sent.credentials] == [("fake", PROVIDER_KEY)]
    assert sent.include_generation_context is True

    async def b_sends_it() -> bool:
        await edge_b.post("/v1/chat/completions", json=CHAT, headers=auth())
        return [c.api_key for c in router.servicer.calls[-1][0].credentials] == [PROVIDER_KEY]

    await eventually(b_sends_it, within=5)

    credential_id = resp.json()["id"]
    deleted = await edge.client.delete(
        f"/admin/projects/{pid}/credentials/{credential_id}", headers=OP
    )
    assert deleted.status_code == 204
    await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
    assert list(router.servicer.calls[-1][0].credentials) == []

    async def b_forgot_it() -> bool:
        await edge_b.post("/v1/chat/completions", json=CHAT, headers=auth())
        return list(router.servicer.calls[-1][0].credentials) == []

    await eventually(b_forgot_it, within=5)
    assert PROVIDER_KEY not in caplog.text
    assert PROVIDER_KEY[-12:] not in caplog.text
    ctx = CallContext(
        "r", "p", "k", provider_key="x", credentials=(ManagedCredential("fake", PROVIDER_KEY),)
    )
    assert PROVIDER_KEY not in repr(ctx)


async def test_a_credentials_base_url_rides_with_it(edge: Edge, router: Any) -> None:
    pid = (await _project(edge))["id"]
    body = {"provider": "fake", "api_key": PROVIDER_KEY, "base_url": "https://1.1.1.1/v1"}
    resp = await edge.client.post(f"/admin/projects/{pid}/credentials", json=body, headers=OP)
    assert resp.status_code == 201, resp.text

    assert (await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())).is_success
    sent = router.servicer.calls[-1][0].credentials
    assert [(c.provider, c.base_url) for c in sent] == [("fake", "https://1.1.1.1/v1")]


async def test_the_generation_context_setting_follows_the_project(
    edge: Edge, edge_b: httpx.AsyncClient, router: Any
) -> None:
    project = await _project(edge)
    path = f"/admin/projects/{project['id']}"
    off = {"settings": {**project["settings"], "generation_context": False}}
    assert (await edge.client.patch(path, json=off, headers=OP)).status_code == 200
    await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
    assert router.servicer.calls[-1][0].include_generation_context is False

    async def b_turned_it_off() -> bool:
        await edge_b.post("/v1/chat/completions", json=CHAT, headers=auth())
        return router.servicer.calls[-1][0].include_generation_context is False

    await eventually(b_turned_it_off, within=5)
    on = {"settings": {"generation_context": True}}
    assert (await edge.client.patch(path, json=on, headers=OP)).status_code == 200
    await edge.client.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers=auth())
    assert router.servicer.calls[-1][0].include_generation_context is True


async def _store_credential(settings: EdgeSettings, secret: bytes) -> None:
    """Seal ``PROVIDER_KEY`` under ``secret`` straight into project ``test`` (no edge running)."""
    await seed_keys(settings.resolved_database_url())
    engine = db.create_engine(settings.resolved_database_url())
    try:
        async with db.make_sessionmaker(engine)() as session:
            project = await repo.ensure_project(session=session, name="test")
            sealed = CredentialCipher(secret).seal(
                PROVIDER_KEY, project_id=project.id, provider="fake"
            )
            await credentials_repo.save_credential(
                session=session,
                row=ProviderCredential(
                    project_id=project.id,
                    provider="fake",
                    key_id=sealed.key_id,
                    ciphertext=sealed.blob,
                    fingerprint=fingerprint(PROVIDER_KEY),
                    last4=PROVIDER_KEY[-4:],
                ),
            )
    finally:
        await engine.dispose()


async def test_a_call_reads_no_database(settings: EdgeSettings, router: Any) -> None:
    await _store_credential(settings, settings.secret_key.get_secret_value().encode())
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = app.state.edge.engine.sync_engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            event.listen(engine, "before_cursor_execute", record)
            try:
                for _ in range(3):
                    resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth())
                    assert resp.status_code == 200
            finally:
                event.remove(engine, "before_cursor_execute", record)
    assert statements == []
    assert [c.api_key for c in router.servicer.calls[-1][0].credentials] == [PROVIDER_KEY]


async def test_a_credential_no_secret_opens_fails_the_call_closed(
    settings: EdgeSettings, router: Any
) -> None:
    await _store_credential(settings, b"a retired secret nobody kept")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth())
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "credential_unreadable"
    assert router.servicer.calls == []


async def test_a_generation_context_chunk_is_forwarded_before_done(edge: Edge, router: Any) -> None:
    priced = orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [],
            "generation_context": {"generated_usage": [{"sku": "s", "amount": "0.1"}]},
        }
    )
    router.servicer.stream_events = [
        route_event(),
        chunk_event(b'{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}'),
        chunk_event(priced),
        usage_event(),
    ]
    resp = await edge.client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers=auth()
    )
    frames = [line for line in resp.text.split("\n\n") if line]
    assert frames[-2:] == ["data: " + priced.decode(), "data: [DONE]"]
