"""``ConsoleSessions``: a signed-out session is refused, whichever edge it was signed out on;
the ``console_logouts`` table every edge reads them from."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.console import ConsoleSessions
from edge.store import console_logouts, migrations_dir
from gateway_common import db
from gateway_common.errors import Unauthenticated


def test_absorbed_logouts_end_sessions_only_add_and_expire() -> None:
    sessions = ConsoleSessions(b"s" * 32)
    one, one_cookie = sessions.issue(now=1000)
    two, two_cookie = sessions.issue(now=1000)
    sessions.read(one_cookie, now=1001)
    sessions.revoke(one, now=1001)  # this edge's logout
    sessions.absorb({two.sid: two.expires}, now=1002)  # another edge's, from the table
    for cookie in (one_cookie, two_cookie):
        with pytest.raises(Unauthenticated, match="ended"):
            sessions.read(cookie, now=1003)
    # A reload that read the table before one's row committed does not bring it back.
    sessions.absorb({}, now=1004)
    with pytest.raises(Unauthenticated):
        sessions.read(one_cookie, now=1005)
    # Ids are forgotten once their cookie has expired anyway.
    sessions.absorb({}, now=one.expires + 1)
    assert sessions._revoked == {}


async def test_the_logout_table_is_idempotent_and_forgets_expired_rows(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'edge.db'}"
    db.migrate(url=url, migrations_dir=migrations_dir(), service="edge")
    engine = db.create_engine(url)
    try:
        async with db.make_sessionmaker(engine)() as session:
            await console_logouts.add_logout(session=session, sid="a", expires_at=100, now=10)
            await console_logouts.add_logout(session=session, sid="a", expires_at=100, now=11)
            await console_logouts.add_logout(session=session, sid="b", expires_at=200, now=12)
            assert {r.sid for r in await console_logouts.list_logouts(session=session, now=50)} == {
                "a",
                "b",
            }
            # The next logout after a's expiry deletes its row; listing skips it meanwhile.
            assert [
                r.sid for r in await console_logouts.list_logouts(session=session, now=150)
            ] == ["b"]
            await console_logouts.add_logout(session=session, sid="c", expires_at=300, now=150)
            rows = await console_logouts.get_logouts(session=session, sids={"a", "b", "c"})
            assert {r.sid: r.expires_at for r in rows} == {"b": 200, "c": 300}
    finally:
        await engine.dispose()
