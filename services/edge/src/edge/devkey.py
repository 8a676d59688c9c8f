"""``python -m edge ensure-dev-key``: provision ``GATEWAY_DEV_API_KEY`` for development.

Idempotent: makes sure project ``default`` exists and holds the key with
every scope (re-scoped and un-revoked if it was changed), then announces
``keys.changed.v1`` so running edges pick it up at once. The announcement is
best effort: with NATS down, edges still see the key at their next periodic
reload.
"""

from __future__ import annotations

import asyncio
import logging

import nats
import orjson
from nats.errors import NoServersError

from gateway_common import db, subjects

from .auth import ALL_SCOPES, hash_api_key
from .config import EdgeSettings
from .store import ApiKeyCreate, repo

__all__ = ["DEFAULT_PROJECT", "ensure_dev_key"]

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
_ANNOUNCE_TIMEOUT_S = 3.0


async def ensure_dev_key(settings: EdgeSettings) -> str | None:
    """Upsert the dev key; returns its key id, or ``None`` when no dev key is configured."""
    if settings.dev_api_key is None:
        log.info("GATEWAY_DEV_API_KEY is not set: nothing to do")
        return None
    key = settings.dev_api_key.get_secret_value()
    engine = db.create_engine(settings.resolved_database_url())
    try:
        async with db.make_sessionmaker(engine)() as session:
            project = await repo.ensure_project(session=session, name=DEFAULT_PROJECT)
            row = await repo.upsert_api_key(
                session=session,
                project_id=project.id,
                data=ApiKeyCreate(
                    name="dev", description="GATEWAY_DEV_API_KEY", scopes=list(ALL_SCOPES)
                ),
                key=key,
                key_hash=hash_api_key(settings.secret_key.get_secret_value().encode(), key),
            )
            key_id = row.id
    finally:
        await engine.dispose()
    await _announce(settings.nats_url, key_id)
    log.info("dev API key %s... ready in project %r", key[:8], DEFAULT_PROJECT)
    return key_id


async def _quiet(_: Exception) -> None:
    """NATS error callback: the failure is reported once by ``_announce``."""


async def _announce(url: str, key_id: str) -> None:
    try:
        # Bounded on purpose: nats-py keeps retrying an unreachable server unless told not to.
        async with asyncio.timeout(_ANNOUNCE_TIMEOUT_S):
            nc = await nats.connect(
                servers=url.split(","),
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=_quiet,
            )
    except (NoServersError, OSError, TimeoutError):
        log.info("NATS unreachable: running edges will see the key at their next reload")
        return
    try:
        await nc.publish(subjects.KEYS_CHANGED, orjson.dumps({"key_id": key_id}))
        await nc.flush()
    finally:
        await nc.close()
