"""Console sessions end on every edge at once: a logout, a revoked admin key.

Two edge processes on one stack (``extra_edge``): a session signed in on edge A works on
edge B (one secret, one cookie); after ``POST /console/api/logout`` on A, B refuses the
cookie within moments (``console_logouts`` + ``console.logout.v1``, ``edge.consolesync``),
long before the cookie's 8 hours. Revoking the admin key a session stands on ends that
session on B too (the key cache's own sync). Over httpx, no browser; on SQLite and
PostgreSQL (``stack``): the subject carries only the session id, B reads the row from the
shared ``console_logouts`` table (edge migration 0007), so each backend's write and read
of it is exercised.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.helpers import extra_edge, poll

pytestmark = pytest.mark.timeout(120)


def _sign_in(origin: str, token: str) -> tuple[str, str]:
    """Sign in on ``origin``: the session cookie's value and the CSRF token."""
    resp = httpx.post(f"{origin}/console/api/login", json={"token": token}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.cookies["sy_console"], resp.json()["csrf"]


def _session_status(origin: str, cookie: str) -> int:
    resp = httpx.get(
        f"{origin}/console/api/session", headers={"cookie": f"sy_console={cookie}"}, timeout=30
    )
    return resp.status_code


def _refused(origin: str, cookie: str) -> bool | None:
    return True if _session_status(origin, cookie) == 401 else None


def test_logout_and_key_revocation_end_the_session_on_every_edge(stack: Stack) -> None:
    a = stack.base_url
    admin = {"authorization": f"Bearer {stack.config.admin_token}"}
    with extra_edge(stack) as b:
        cookie, csrf = _sign_in(a, stack.config.admin_token or "")
        assert _session_status(b, cookie) == 200
        other, _ = _sign_in(b, stack.config.admin_token or "")

        out = httpx.post(
            f"{a}/console/api/logout",
            headers={"cookie": f"sy_console={cookie}", "x-csrf-token": csrf},
            timeout=30,
        )
        assert out.status_code == 204, out.text
        assert _session_status(a, cookie) == 401
        poll(lambda: _refused(b, cookie), timeout=10)
        # An admin API call with the signed-out cookie is refused on B too.
        listed = httpx.get(
            f"{b}/admin/projects", headers={"cookie": f"sy_console={cookie}"}, timeout=30
        )
        assert listed.status_code == 401, listed.text
        # Only that session ended: another one of the same operator still works everywhere.
        assert _session_status(a, other) == 200 and _session_status(b, other) == 200

        # A session on an admin key ends on both edges when the key is revoked.
        project = httpx.post(
            f"{a}/admin/projects", json={"name": f"lo-{secrets.token_hex(4)}"}, headers=admin
        )
        assert project.status_code == 201, project.text
        pid = project.json()["id"]
        key = httpx.post(
            f"{a}/admin/projects/{pid}/keys",
            json={"name": "console", "scopes": ["admin"]},
            headers=admin,
        )
        assert key.status_code == 201, key.text
        poll(lambda: True if _sign_in_status(b, key.json()["key"]) == 200 else None, timeout=10)
        keyed, _ = _sign_in(b, key.json()["key"])
        assert _session_status(a, keyed) == 200
        revoked = httpx.post(
            f"{a}/admin/projects/{pid}/keys/{key.json()['id']}/revoke", headers=admin
        )
        assert revoked.status_code == 200, revoked.text
        poll(lambda: _refused(b, keyed), timeout=10)
        assert _session_status(a, keyed) == 401


def _sign_in_status(origin: str, token: str) -> int:
    return httpx.post(f"{origin}/console/api/login", json={"token": token}, timeout=30).status_code
