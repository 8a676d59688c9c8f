"""keys.changed.v1 naming a key reloads just that key; the cache patches single entries."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import orjson
import pytest

from edge.auth import KeyCache, KeyEntry, hash_api_key
from edge.store import ApiKey, ApiKeyCreate, repo
from gateway_common import db, subjects
from gateway_common.errors import Unauthenticated

from .support import SECRET, Edge, eventually

pytestmark = pytest.mark.timeout(30)

KEY = "sk-sy-targeted-reload-0001"


def test_put_and_remove_patch_single_entries() -> None:
    cache = KeyCache(b"s")
    cache.replace([(cache.hash("a"), KeyEntry("k1", "p", frozenset()))])
    cache.put(cache.hash("b"), KeyEntry("k2", "p", frozenset()))
    assert cache.authenticate("Bearer b").key_id == "k2"
    cache.put(cache.hash("b"), KeyEntry("k2", "p", frozenset(), revoked=True))
    assert len(cache) == 2
    with pytest.raises(Unauthenticated, match="revoked"):
        cache.authenticate("Bearer b")
    cache.remove("k2")
    cache.remove("never-existed")
    with pytest.raises(Unauthenticated, match="Incorrect"):
        cache.authenticate("Bearer b")
    assert cache.authenticate("Bearer a").key_id == "k1"


async def _announce(nats_url: str, payload: dict[str, str]) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.publish(subjects.KEYS_CHANGED, orjson.dumps(payload))
        await nc.flush()
    finally:
        await nc.close()


async def test_message_with_a_key_id_reloads_that_key(edge: Edge, nats_url: str) -> None:
    state = edge.app.state.edge
    sessions = db.make_sessionmaker(state.engine)
    async with sessions() as session:
        project = await repo.ensure_project(session=session, name="test")
        row = await repo.create_api_key(
            session=session,
            project_id=project.id,
            data=ApiKeyCreate(name="t", scopes=["chat"]),
            key=KEY,
            key_hash=hash_api_key(SECRET.encode(), KEY),
        )
    await _announce(nats_url, {"key_id": row.id})

    async def status() -> int:
        return (
            await edge.client.get("/v1/models", headers={"authorization": f"Bearer {KEY}"})
        ).status_code

    async def works() -> bool:
        return await status() == 200

    await eventually(works, within=1)

    async with sessions() as session:
        stored = await session.get(ApiKey, row.id)
        assert stored is not None
        await repo.revoke_api_key(session=session, key=stored)
    await _announce(nats_url, {"key_id": row.id})

    async def refused() -> bool:
        return await status() == 401

    await eventually(refused, within=1)
    assert state.keys.drain_last_used().keys() <= {row.id}


async def test_key_deleted_elsewhere_is_dropped(edge: Edge, nats_url: str) -> None:
    state = edge.app.state.edge
    async with db.make_sessionmaker(state.engine)() as session:
        key = await session.get(ApiKey, edge.key_ids["all"])
        assert key is not None
        await repo.delete_api_key(session=session, key=key)
    await _announce(nats_url, {"key_id": edge.key_ids["all"]})

    async def dropped() -> bool:
        try:
            state.keys.authenticate("Bearer sk-test-all-scopes-0001", now=datetime.now(UTC))
        except Unauthenticated:
            return True
        return False

    await eventually(dropped, within=1)
