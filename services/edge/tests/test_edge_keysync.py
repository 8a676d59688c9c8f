"""The key cache follows the table: keys.changed.v1 reloads at once; last use is written back."""

from __future__ import annotations

import nats
import pytest

from edge.auth import hash_api_key
from edge.store import ApiKey, ApiKeyCreate, repo
from gateway_common import db, subjects
from gateway_common.errors import Unauthenticated

from .support import SECRET, Edge, auth, eventually

pytestmark = pytest.mark.timeout(30)

NEW_KEY = "sk-test-created-later-05"


async def _announce(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.publish(subjects.KEYS_CHANGED, b"{}")
        await nc.flush()
    finally:
        await nc.close()


async def test_new_key_works_after_keys_changed(edge: Edge, nats_url: str) -> None:
    assert (
        await edge.client.get("/v1/models", headers={"authorization": f"Bearer {NEW_KEY}"})
    ).status_code == 401
    state = edge.app.state.edge
    async with db.make_sessionmaker(state.engine)() as session:
        project = await repo.ensure_project(session=session, name="test")
        await repo.create_api_key(
            session=session,
            project_id=project.id,
            data=ApiKeyCreate(name="later", scopes=["chat"]),
            key=NEW_KEY,
            key_hash=hash_api_key(SECRET.encode(), NEW_KEY),
        )
    await _announce(nats_url)

    async def accepted() -> bool:
        try:
            state.keys.authenticate(f"Bearer {NEW_KEY}")
        except Unauthenticated:
            return False
        return True

    await eventually(accepted)


async def test_reload_writes_last_used(edge: Edge, nats_url: str) -> None:
    state = edge.app.state.edge
    resp = await edge.client.get("/v1/models", headers=auth())
    assert resp.status_code == 200
    await _announce(nats_url)

    async def recorded() -> bool:
        async with db.make_sessionmaker(state.engine)() as session:
            row = await session.get(ApiKey, edge.key_ids["all"])
            return row is not None and row.last_used_at is not None

    await eventually(recorded)
