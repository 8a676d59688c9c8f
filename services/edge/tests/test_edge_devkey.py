"""python -m edge migrate / ensure-dev-key: idempotent, announced on keys.changed.v1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from sqlmodel import select

from edge.__main__ import main
from edge.auth import ALL_SCOPES, hash_api_key
from edge.config import EdgeSettings
from edge.devkey import ensure_dev_key
from edge.store import ApiKey, Project, migrations_dir
from gateway_common import db, subjects

from .support import SECRET, free_port

pytestmark = pytest.mark.timeout(30)

DEV_KEY = "sk-sy-dev-0123456789abcdef"


async def _rows(url: str) -> tuple[list[Project], list[ApiKey]]:
    engine = db.create_engine(url)
    try:
        async with db.make_sessionmaker(engine)() as session:
            projects = list((await session.exec(select(Project))).all())
            keys = list((await session.exec(select(ApiKey))).all())
    finally:
        await engine.dispose()
    return projects, keys


async def test_idempotent_and_announced(db_url: str, nats_url: str) -> None:
    settings = EdgeSettings(
        database_url=db_url, nats_url=nats_url, dev_api_key=DEV_KEY, secret_key=SECRET
    )
    nc = await nats.connect(nats_url)
    sub = await nc.subscribe(subjects.KEYS_CHANGED)
    try:
        first = await ensure_dev_key(settings)
        second = await ensure_dev_key(settings)
        msg = await sub.next_msg(timeout=5)
    finally:
        await nc.close()
    assert first == second and first is not None
    assert first.encode() in msg.data
    projects, keys = await _rows(db_url)
    assert [p.name for p in projects] == ["default"]
    assert len(keys) == 1
    key = keys[0]
    assert key.key_hash == hash_api_key(SECRET.encode(), DEV_KEY)
    assert key.prefix == DEV_KEY[:12] and DEV_KEY not in key.model_dump_json()
    assert sorted(key.scopes) == sorted(ALL_SCOPES) and key.project_id == projects[0].id


async def test_without_nats_still_provisions(db_url: str) -> None:
    settings = EdgeSettings(
        database_url=db_url, nats_url=f"nats://127.0.0.1:{free_port()}", dev_api_key=DEV_KEY
    )
    assert await ensure_dev_key(settings) is not None
    assert len((await _rows(db_url))[1]) == 1


async def test_no_op_without_a_dev_key(db_url: str) -> None:
    assert await ensure_dev_key(EdgeSettings(database_url=db_url)) is None
    assert await _rows(db_url) == ([], [])


def test_cli_migrate_then_ensure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GATEWAY_DATABASE_URL", url)
    monkeypatch.setenv("GATEWAY_DEV_API_KEY", DEV_KEY)
    monkeypatch.setenv("NATS_URL", f"127.0.0.1:{free_port()}")
    assert main(["migrate"]) == 0
    assert main(["ensure-dev-key"]) == 0
    assert len(asyncio.run(_rows(url))[1]) == 1
    assert migrations_dir().is_dir()
