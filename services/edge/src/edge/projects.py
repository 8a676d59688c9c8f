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
from typing import Any, Final, Literal

from gateway_common.errors import InvalidRequest, ServiceUnavailable

from .credentials import CredentialCipher, CredentialUnreadable, SealedCredential
from .pipeline.ratelimit import RateLimits

__all__ = [
    "GENERATION_CONTEXT_SETTING",
    "MESSAGES_GENERATION_CONTEXT_SETTING",
    "CallOptions",
    "ManagedCredential",
    "ProjectCache",
    "ProjectView",
    "SealedProviderKey",
    "Surface",
]

log = logging.getLogger(__name__)

#: ``projects.settings`` key: false turns ``generation_context`` off (plain OpenAI answers).
GENERATION_CONTEXT_SETTING: Final = "generation_context"
#: ``projects.settings`` key: true turns ``generation_context`` on for Anthropic's Messages
#: (off by default: Anthropic clients do not expect the field, see
#: docs/anthropic-compatibility.md).
MESSAGES_GENERATION_CONTEXT_SETTING: Final = "messages_generation_context"

#: The public surfaces whose answers may carry ``generation_context``.
Surface = Literal["openai", "messages"]


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
    #: ``generation_context`` on Anthropic's Messages (``MESSAGES_GENERATION_CONTEXT_SETTING``).
    messages_generation_context: bool = False
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
            messages_generation_context=settings.get(MESSAGES_GENERATION_CONTEXT_SETTING) is True,
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

    def call_options(
        self, project_id: str, surface: Surface = "openai", *, credential_id: str = ""
    ) -> CallOptions:
        """The router-call options of ``project_id``, its managed keys opened; whether the
        answer carries ``generation_context`` is the project's setting for ``surface``.
        With ``credential_id`` (a gateway's own endpoint) only that credential is opened.

        Raises ``ServiceUnavailable`` when a stored credential cannot be opened, and
        ``InvalidRequest`` (``credential_not_found``) when ``credential_id`` is not one of
        the project's.
        """
        view = self._views.get(project_id, _DEFAULT)
        context = (
            view.messages_generation_context if surface == "messages" else view.generation_context
        )
        chosen = view.credentials
        if credential_id:
            chosen = tuple(c for c in chosen if c.credential_id == credential_id)
            if not chosen:
                raise InvalidRequest(
                    "The gateway's provider credential no longer exists in this project.",
                    param="model",
                    code="credential_not_found",
                )
        if not chosen:
            return CallOptions(include_generation_context=context)
        opened = []
        for cred in chosen:
            try:
                key = self._cipher.open(cred.sealed, project_id=project_id, provider=cred.provider)
            except CredentialUnreadable as exc:
                log.error("managed credential %s cannot be opened: %s", cred.credential_id, exc)
                raise ServiceUnavailable(
                    "The project's managed provider credential cannot be read by the gateway.",
                    code="credential_unreadable",
                ) from None
            opened.append(ManagedCredential(cred.provider, key, cred.base_url or ""))
        return CallOptions(tuple(opened), context)
