"""Console sessions: who a browser at ``/console`` is, held in a signed cookie, and its CSRF token.

Login (``POST /console/api/login``) checks the admin token or an ``admin``-scope key
exactly as the admin API does, then sets two cookies:

    sy_console   the session: ``base64(json).hmac`` signed with the gateway secret
                 (``GATEWAY_SECRET_KEY``); HttpOnly, SameSite=Strict, Secure over https.
                 It never carries the token itself: the operator's session holds a
                 fingerprint of the admin token (rotating the token ends every
                 session), a key's session holds the key id (revoking the key ends it).
    sy_csrf      the session's CSRF token, readable by the console's script, which
                 echoes it in ``X-CSRF-Token`` on every state-changing call
                 (double submit, and bound to the signed session).

The admin API accepts the session in place of ``Authorization`` (``admin.base``): one
auth rule for both. Logout revokes the session id on this edge, records it in the
``console_logouts`` table and announces it on ``console.logout.v1``, so every edge
refuses the cookie at once (``edge.consolesync`` keeps ``absorb``-ing the table), and
clears the cookies; sessions also expire after ``SESSION_TTL_S``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway_common.errors import PermissionDenied, Unauthenticated

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_TTL_S",
    "ConsoleSession",
    "ConsoleSessions",
]

COOKIE = "sy_console"
CSRF_COOKIE = "sy_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 8 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One signed-in browser: the operator (``key_id`` None) or one admin key's project."""

    sid: str
    csrf: str
    expires: int
    project_id: str | None = None
    key_id: str | None = None
    operator_fp: str | None = None


class ConsoleSessions:
    """Signs, checks and revokes console sessions with the gateway secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"switchyard-console-session-v1", hashlib.sha256).digest()
        self._revoked: dict[str, int] = {}

    def fingerprint(self, admin_token: str) -> str:
        """A non-reversible tag of the admin token, so its rotation ends operator sessions."""
        return hmac.new(self._key, admin_token.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(
        self,
        *,
        project_id: str | None = None,
        key_id: str | None = None,
        operator_fp: str | None = None,
        now: float | None = None,
    ) -> tuple[ConsoleSession, str]:
        """A new session and its cookie value."""
        session = ConsoleSession(
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            expires=int((now or time.time()) + SESSION_TTL_S),
            project_id=project_id,
            key_id=key_id,
            operator_fp=operator_fp,
        )
        payload = json.dumps(
            {
                "sid": session.sid,
                "csrf": session.csrf,
                "exp": session.expires,
                "pid": project_id,
                "kid": key_id,
                "op": operator_fp,
            },
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return session, f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def read(self, cookie: str, *, now: float | None = None) -> ConsoleSession:
        """The session of a cookie value; ``Unauthenticated`` when forged, expired or revoked."""
        body, _, sig = cookie.partition(".")
        if not body or not hmac.compare_digest(sig.encode(), self._sign(body).encode()):
            raise Unauthenticated("Console session is not valid; sign in again.")
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = ConsoleSession(
                sid=str(data["sid"]),
                csrf=str(data["csrf"]),
                expires=int(data["exp"]),
                project_id=data.get("pid"),
                key_id=data.get("kid"),
                operator_fp=data.get("op"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated("Console session is not valid; sign in again.") from exc
        now = now or time.time()
        if session.expires <= now or session.sid in self._revoked:
            raise Unauthenticated("Console session has ended; sign in again.")
        return session

    def revoke(self, session: ConsoleSession, *, now: float | None = None) -> None:
        """End ``session`` on this edge (forgotten once it would have expired anyway)."""
        self.absorb({session.sid: session.expires}, now=now)

    def absorb(self, logouts: Mapping[str, int], *, now: float | None = None) -> None:
        """End the sessions ``logouts`` (session id -> expiry) here too, e.g. another edge's.

        Only ever adds (a logout is never undone), so a reload that read the table just
        before a logout committed cannot bring that session back; expired ids are dropped.
        """
        now = now or time.time()
        merged = {**self._revoked, **logouts}
        self._revoked = {sid: exp for sid, exp in merged.items() if exp > now}

    @staticmethod
    def check_csrf(session: ConsoleSession, method: str, header: str | None) -> None:
        """``PermissionDenied`` for a state-changing call without the session's CSRF token."""
        if method.upper() in _SAFE_METHODS:
            return
        if not header or not hmac.compare_digest(header.encode(), session.csrf.encode()):
            raise PermissionDenied(
                "Missing or wrong X-CSRF-Token header for this console session.",
                code="csrf_failed",
            )
