"""The Gateway API's endpoints, held in memory: ``EndpointCache``.

Per project the edge keeps a ``ProjectEndpoints``: the project's type (the
Gateway API serves ``ai_gateway`` projects only) and its endpoints by slug,
each an ``EndpointView`` with what a call needs (model, system prompt,
parameters, streaming switch, active flag, and seed 001's pipeline settings
with their guardrails and schemas already compiled). A call looks up
``(project_id, slug)`` in a dict: no database round trip per request.

``EndpointSync`` (``endpointsync``) fills the cache and keeps it current;
the admin routes patch their own edge's copy at once after a write.

``EndpointView.body`` is the simplest prompt apply: ``{"model", **params,
"messages": [system prompt?] + messages, "stream"}``. The Gateway API's
pipeline builds its bodies in ``edge.pipeline.prompt`` (the same shape, plus the
session history and the rendered prompt template, once per model it tries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from .pipeline.guardrails import Guardrails
from .pipeline.ratelimit import RateLimits

if TYPE_CHECKING:  # jsonschema is imported only when a schema is compiled (endpointsync)
    from .pipeline.schemas import CompiledSchema

__all__ = ["EndpointCache", "EndpointView", "ProjectEndpoints"]


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One endpoint as a call uses it (built from an ``endpoints`` row)."""

    endpoint_id: str
    slug: str
    model: str
    system_prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    streaming_enabled: bool = False
    active: bool = True
    #: Seed 001's pipeline settings, compiled once when the endpoint changes.
    prompt_template: str | None = None
    input_schema: CompiledSchema | None = None
    output_schema: CompiledSchema | None = None
    guardrails: Guardrails = field(default_factory=Guardrails)
    max_request_tokens: int | None = None
    monthly_budget: Decimal | None = None
    rate_limits: RateLimits | None = None
    fallbacks: tuple[str, ...] = ()
    sessions_enabled: bool = False
    session_ttl_seconds: int = 86400

    @property
    def max_output_tokens(self) -> int | None:
        """The completion cap the parameters set per choice (for budget admission), if any."""
        value = self.params.get("max_completion_tokens") or self.params.get("max_tokens")
        return value if isinstance(value, int) else None

    def body(self, messages: Sequence[Mapping[str, Any]], *, stream: bool) -> bytes:
        """The chat completion request this endpoint sends for ``messages`` (prompt apply).

        ``stream`` is honoured only when the endpoint has streaming enabled.
        """
        conversation: list[Mapping[str, Any]] = []
        if self.system_prompt:
            conversation.append({"role": "system", "content": self.system_prompt})
        conversation.extend(messages)
        return orjson.dumps(
            {
                "model": self.model,
                **self.params,
                "messages": conversation,
                "stream": stream and self.streaming_enabled,
            }
        )


@dataclass(frozen=True, slots=True)
class ProjectEndpoints:
    """A project's type and its endpoints by slug (inactive ones included)."""

    project_type: str
    endpoints: Mapping[str, EndpointView] = field(default_factory=lambda: MappingProxyType({}))


class EndpointCache:
    """``project_id -> ProjectEndpoints``, swapped whole by ``replace``, patched by ``put``/``remove``."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectEndpoints] = {}

    def __len__(self) -> int:
        return len(self._projects)

    def replace(self, projects: Mapping[str, ProjectEndpoints]) -> None:
        """Install a complete new set of projects."""
        self._projects = dict(projects)

    def put(self, project_id: str, view: ProjectEndpoints) -> None:
        self._projects[project_id] = view

    def remove(self, project_id: str) -> None:
        self._projects.pop(project_id, None)

    def project_type(self, project_id: str) -> str | None:
        """The project's type, or None when this edge does not know the project (yet)."""
        found = self._projects.get(project_id)
        return None if found is None else found.project_type

    def get(self, project_id: str, slug: str) -> EndpointView | None:
        """The *active* endpoint ``slug`` of ``project_id``; None if unknown or inactive."""
        found = self._projects.get(project_id)
        if found is None:
            return None
        endpoint = found.endpoints.get(slug)
        return endpoint if endpoint is not None and endpoint.active else None
