"""Channels (seed 003): projects of type ``channel``, called by web sites with one key each.

A channel's settings are keys of its project's ``settings`` (``PATCH
/admin/projects/{id}``), validated here by ``ChannelSettings`` whenever the
project is a channel:

    model                the catalog model every conversation uses (required to chat)
    system_prompt        sent first in every conversation
    enabled              false: "site disabled" (403)
    rate_limits          {per_minute, per_day}: requests, counted on every edge by the
                         shared limiter under the channel's key
    history_ttl_seconds  a session lives this long after its last message (24 h)
    allowed_origins      browser origins that get CORS headers (none by default)

The key (``CHANNEL_KEY_PREFIX`` + 256 random bits) is stored as its HMAC-SHA256
under ``GATEWAY_SECRET_KEY`` (the lookup) and sealed with AES-256-GCM
(``CredentialCipher``, associated data ``channel-key`` and the project id) so the
owner can read it again. Rotation replaces both in one row: ``ChannelSync``
(a ``ProjectTableSync`` on ``projects.changed.v1``, which the admin routes publish
after every key or settings write) drops the old hash on every edge, so the old key
is refused at once.

A site's ``session_id`` (any string of at most 255 characters) names a history
session of sessions' contract by ``history_id``: UUID5 of the project, the
channel scope and the name, opened with ``adopt`` (``gateway_common.sessions_history``),
so the same name continues the conversation until it expires and then restarts.

The embeddable widget (``docs/widget.md``) calls with a publishable widget id
(``WIDGET_ID_PREFIX`` + 192 random bits) instead of the key. The id is kept in the
project's ``settings`` under ``WIDGET_SETTING`` (it is no secret: it is in every page
that embeds the widget), written only by ``POST /admin/projects/{id}/widget``: a
settings write keeps the stored id whatever it sends (``keep_widget_id``), so no admin
can claim another channel's id. ``widget_visitor_per_minute`` limits each visitor.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import subjects
from gateway_common.errors import InvalidRequest
from gateway_common.sessions_history import MAX_TTL_SECONDS

from .auth import KeyEntry, hash_api_key
from .pipeline.ratelimit import PositiveLimit, RateLimits
from .store import ChannelKey, Project
from .tablesync import ProjectTableSync

__all__ = [
    "CHANNEL_KEY_PREFIX",
    "CHANNEL_SCOPE",
    "CHANNEL_SETTING_FIELDS",
    "WIDGET_ID_PREFIX",
    "WIDGET_SETTING",
    "ChannelCache",
    "ChannelLimits",
    "ChannelSettings",
    "ChannelSync",
    "ChannelView",
    "channel_settings",
    "generate_channel_key",
    "generate_widget_id",
    "history_id",
    "keep_widget_id",
    "seal_aad",
]

#: Every channel key starts with this (recognisable in logs, scanners and support tickets).
CHANNEL_KEY_PREFIX: Final = "sych_"
#: Every widget id starts with this (publishable: it can only chat as a page visitor).
WIDGET_ID_PREFIX: Final = "sywg_"
#: The ``settings`` key holding a channel's widget id.
WIDGET_SETTING: Final = "widget_id"
#: The sessions ``scope`` of channel conversations.
CHANNEL_SCOPE: Final = "channel"
#: The ``provider`` name under which channel keys are sealed (associated data).
_SEAL_NAME: Final = "channel-key"
_NAMESPACE: Final = uuid.UUID("5d0f3c1e-7a43-4c0e-9a51-1f2c9b6e8d21")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class ChannelLimits(BaseModel):
    """A channel's request quotas (absent: no limit of that kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_minute: PositiveLimit | None = Field(default=None, description="Requests per minute.")
    per_day: PositiveLimit | None = Field(default=None, description="Requests per UTC day.")


class ChannelSettings(BaseModel):
    """The channel keys of a ``channel`` project's ``settings`` (other keys are left alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=20_000)
    enabled: bool = Field(default=True, description="False: every call is 403 site disabled.")
    rate_limits: ChannelLimits | None = None
    history_ttl_seconds: int = Field(default=86_400, ge=1, le=MAX_TTL_SECONDS)
    allowed_origins: tuple[str, ...] = Field(
        default=(), description="Exact origins (scheme://host[:port]) allowed by CORS."
    )

    widget_visitor_per_minute: PositiveLimit = Field(
        default=10, description="Widget messages per visitor per minute."
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not _ORIGIN.match(origin):
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value


CHANNEL_SETTING_FIELDS: Final = frozenset(ChannelSettings.model_fields)


def channel_settings(settings: Mapping[str, Any]) -> ChannelSettings:
    """The channel settings in a project's ``settings``; ``InvalidRequest`` naming the field."""
    try:
        return ChannelSettings.model_validate(
            {k: v for k, v in settings.items() if k in CHANNEL_SETTING_FIELDS}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            f"Invalid 'settings.{where}': {first['msg']}.", param=f"settings.{where}"
        ) from None


def generate_channel_key() -> str:
    """A new channel key: ``CHANNEL_KEY_PREFIX`` + 256 random bits, URL-safe base64."""
    return CHANNEL_KEY_PREFIX + secrets.token_urlsafe(32)


def generate_widget_id() -> str:
    """A new publishable widget id: ``WIDGET_ID_PREFIX`` + 192 random bits."""
    return WIDGET_ID_PREFIX + secrets.token_urlsafe(24)


def keep_widget_id(
    new: Mapping[str, Any] | None, old: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``new`` settings with the widget id of ``old`` (or none): a settings write never sets it."""
    if new is None:
        return None
    kept = {k: v for k, v in new.items() if k != WIDGET_SETTING}
    if old and isinstance(old.get(WIDGET_SETTING), str):
        kept[WIDGET_SETTING] = old[WIDGET_SETTING]
    return kept


def seal_aad() -> str:
    """The ``provider`` name ``CredentialCipher`` seals channel keys under."""
    return _SEAL_NAME


def history_id(project_id: str, session_name: str) -> str:
    """The sessions id of a site's ``session_id`` in one channel (UUID5; never another's)."""
    return str(uuid.uuid5(_NAMESPACE, f"{project_id}\x00{CHANNEL_SCOPE}\x00{session_name}"))


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel project as a call uses it; ``key_hash`` None until a key is created."""

    project_id: str
    is_channel: bool
    settings: ChannelSettings = field(default_factory=ChannelSettings)
    key_hash: str | None = None
    widget_id: str | None = None

    def principal(self) -> KeyEntry:
        """The ``KeyEntry`` a channel call is admitted, limited and billed as."""
        limits = self.settings.rate_limits
        return KeyEntry(
            key_id=f"channel-{self.project_id}",
            project_id=self.project_id,
            scopes=frozenset({"chat"}),
            rate_limits=None
            if limits is None
            else RateLimits(per_minute=limits.per_minute, per_day=limits.per_day),
        )


class ChannelCache:
    """``project_id -> ChannelView`` plus ``key_hash -> project_id`` (a ``ProjectCopy``)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._views: dict[str, ChannelView] = {}
        self._by_hash: dict[str, str] = {}
        self._by_widget: dict[str, str] = {}

    def replace(self, views: Mapping[str, ChannelView]) -> None:
        new = dict(views)
        by_hash = {v.key_hash: p for p, v in new.items() if v.key_hash and v.is_channel}
        by_widget = {v.widget_id: p for p, v in new.items() if v.widget_id and v.is_channel}
        self._views, self._by_hash, self._by_widget = new, by_hash, by_widget

    def put(self, project_id: str, view: ChannelView) -> None:
        self.remove(project_id)
        self._views[project_id] = view
        if view.key_hash and view.is_channel:
            self._by_hash[view.key_hash] = project_id
        if view.widget_id and view.is_channel:
            self._by_widget[view.widget_id] = project_id

    def remove(self, project_id: str) -> None:
        old = self._views.pop(project_id, None)
        if old is not None and old.key_hash:
            self._by_hash.pop(old.key_hash, None)
        if old is not None and old.widget_id:
            self._by_widget.pop(old.widget_id, None)

    def hash(self, key: str) -> str:
        """The stored form of a channel key."""
        return hash_api_key(self._secret, key)

    def lookup(self, key: str) -> ChannelView | None:
        """The channel whose current key is ``key`` (one HMAC, one dict probe), else None."""
        if not key.startswith(CHANNEL_KEY_PREFIX):
            return None
        project_id = self._by_hash.get(self.hash(key))
        return None if project_id is None else self._views.get(project_id)

    def by_widget(self, widget_id: str) -> ChannelView | None:
        """The channel whose current widget id is ``widget_id``, else None."""
        if not widget_id.startswith(WIDGET_ID_PREFIX):
            return None
        project_id = self._by_widget.get(widget_id)
        return None if project_id is None else self._views.get(project_id)

    def origin_allowed(self, origin: str) -> bool:
        """Whether any enabled channel allows ``origin`` (a preflight names no channel)."""
        return any(
            origin in v.settings.allowed_origins
            for v in self._views.values()
            if v.is_channel and v.settings.enabled
        )


class ChannelSync(ProjectTableSync[ChannelKey, ChannelView]):
    """Keeps a ``ChannelCache`` equal to ``projects`` + ``channel_keys`` (see module)."""

    name = "channel-sync"
    subjects = (subjects.PROJECTS_CHANGED,)

    @staticmethod
    async def rows(session: AsyncSession, project_id: str | None) -> Sequence[ChannelKey]:
        query = select(ChannelKey)
        if project_id is not None:
            query = query.where(col(ChannelKey.project_id) == project_id)
        return list((await session.exec(query)).all())

    @staticmethod
    def view(project: Project, rows: Sequence[ChannelKey]) -> ChannelView:
        if project.type != "channel":
            return ChannelView(project_id=project.id, is_channel=False)
        try:
            settings = channel_settings(project.settings or {})
        except InvalidRequest:  # stored before validation existed: treat as disabled
            settings = ChannelSettings(enabled=False)
        return ChannelView(
            project_id=project.id,
            is_channel=True,
            settings=settings,
            key_hash=rows[0].key_hash if rows else None,
            widget_id=_widget_id(project.settings),
        )


def _widget_id(settings: Mapping[str, Any] | None) -> str | None:
    value = (settings or {}).get(WIDGET_SETTING)
    return value if isinstance(value, str) and value.startswith(WIDGET_ID_PREFIX) else None
