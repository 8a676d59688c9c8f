"""What the hot path needs to know about each project, held in memory: ``ProjectCache``.

Per project the edge keeps a ``ProjectView``: whether answers carry
``generation_context`` (project setting ``generation_context``, default
true) and the project's managed provider credentials *as sealed at rest*,
each with its custom ``base_url`` if it has one (checked against SSRF rules
when saved, and again by the router before each call that uses it).
A call asks ``call_options(project_id)``, which opens that project's sealed
keys (one AES-GCM decryption each, microseconds) and hands the plaintext to
the router call only; the plaintext is never cached, logged or put in a repr.

A credential no configured secret opens fails the call (``ServiceUnavailable``,
code ``credential_unreadable``) rather than letting it run on the operator's
own provider key: the project asked to be billed on its key, so falling back
silently would bill the wrong account.

``ProjectSync`` (``projectsync``) fills the cache and keeps it current;
requests never read the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway_common.errors import ServiceUnavailable

from .credentials import CredentialCipher, CredentialUnreadable, SealedCredential
from .pipeline.ratelimit import RateLimits

__all__ = [
    "GENERATION_CONTEXT_SETTING",
    "CallOptions",
    "ManagedCredential",
    "ProjectCache",
    "ProjectView",
    "SealedProviderKey",
]

log = logging.getLogger(__name__)

#: ``projects.settings`` key: false turns ``generation_context`` off (plain OpenAI answers).
GENERATION_CONTEXT_SETTING: Final = "generation_context"


@dataclass(frozen=True, slots=True)
class SealedProviderKey:
    """One managed credential as stored: which provider, the sealed key, its base URL if any."""

    credential_id: str
    provider: str
    sealed: SealedCredential
    base_url: str | None = None


@dataclass(frozen=True, slots=True)
class ManagedCredential:
    """One opened credential, for one router call: the key is kept out of repr."""

    provider: str
    api_key: str = field(repr=False)
    #: The credential's own endpoint; "" sends the call to the catalog provider's.
    base_url: str = ""


@dataclass(frozen=True, slots=True)
class ProjectView:
    """The per-request facts of one project; the default is what an unknown project gets."""

    generation_context: bool = True
    credentials: tuple[SealedProviderKey, ...] = ()
    #: The project's rate limits, shared by all its keys (None: none).
    rate_limits: RateLimits | None = None

    @classmethod
    def build(
        cls,
        settings: Mapping[str, Any],
        credentials: Iterable[SealedProviderKey],
        rate_limits: Mapping[str, Any] | None = None,
    ) -> ProjectView:
        """The view of a project with ``settings`` (its JSON column), ``credentials`` and
        ``rate_limits`` (its column)."""
        flag = settings.get(GENERATION_CONTEXT_SETTING, True)
        return cls(
            generation_context=flag is not False,
            credentials=tuple(credentials),
            rate_limits=RateLimits.model_validate(rate_limits) if rate_limits else None,
        )


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one router call carries for its project: opened keys (hidden from repr), flags."""

    credentials: tuple[ManagedCredential, ...] = field(default=(), repr=False)
    include_generation_context: bool = True


_DEFAULT = ProjectView()


class ProjectCache:
    """``project_id -> ProjectView``, swapped whole by ``replace``, patched by ``put``/``remove``."""

    def __init__(self, cipher: CredentialCipher) -> None:
        self._cipher = cipher
        self._views: dict[str, ProjectView] = {}

    def __len__(self) -> int:
        return len(self._views)

    def replace(self, views: Mapping[str, ProjectView]) -> None:
        """Install a complete new set of views."""
        self._views = dict(views)

    def put(self, project_id: str, view: ProjectView) -> None:
        self._views[project_id] = view

    def remove(self, project_id: str) -> None:
        self._views.pop(project_id, None)

    def get(self, project_id: str) -> ProjectView:
        """The project's view; the default (no credentials, generation_context on) if unknown."""
        return self._views.get(project_id, _DEFAULT)

    def call_options(self, project_id: str) -> CallOptions:
        """The router-call options of ``project_id``, its managed keys opened.

        Raises ``ServiceUnavailable`` when a stored credential cannot be opened.
        """
        view = self._views.get(project_id, _DEFAULT)
        if not view.credentials:
            return CallOptions(include_generation_context=view.generation_context)
        opened = []
        for cred in view.credentials:
            try:
                key = self._cipher.open(cred.sealed, project_id=project_id, provider=cred.provider)
            except CredentialUnreadable as exc:
                log.error("managed credential %s cannot be opened: %s", cred.credential_id, exc)
                raise ServiceUnavailable(
                    "The project's managed provider credential cannot be read by the gateway.",
                    code="credential_unreadable",
                ) from None
            opened.append(ManagedCredential(cred.provider, key, cred.base_url or ""))
        return CallOptions(tuple(opened), view.generation_context)
