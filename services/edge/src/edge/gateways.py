"""Seed 002's gateways, held in memory (``GatewayCache``), and their prompt apply.

A call names a gateway in ``model``: its full id (a UUID) or ``"<name>:<short>"``
where ``short`` is the first 4 hex digits of the id (seed 002's
``"my-gateway:50c3"``). ``GatewayCache.find(project_id, model)`` answers from a
dict per project: no database round trip per request. Another project's
gateway is never found (the lookup is scoped by the caller's project). When two
gateways of one project share a name and a short id, ``name:short`` picks the
oldest; the full id is always exact.

``GatewaySync`` (``gatewaysync``) fills the cache and keeps it current on
``gateways.changed.v1``; the admin routes patch their own edge's copy first.

Prompt apply (``apply``), on the client's parsed body:

1. ``messages`` = the system message, then the client's messages, then the
   ``prefill`` as a last assistant message (the model continues it). The
   system message is the instructions followed by the retrieved chunks in
   ``GROUNDING_TEMPLATE`` (only when there are chunks).
2. ``temperature``, ``top_p``, ``max_tokens`` (``max_completion_tokens`` counts
   as it) and ``stop``: a request's value is used only for a name the gateway
   lists in ``overridable``; otherwise the gateway's own value (if any) is sent
   and the request's ignored.
3. ``model`` = the gateway's model, or with ``routing`` ``auto`` the one
   ``choose_model`` picks; every other field (``stream``, ``metadata``,
   ``tools``, ...) passes through.

Line items the edge adds to the call's usage event (``line_items``, priced from the
catalog's ``skus``): ``rag.retrieval.queries`` 1 per retrieval that answered, and with
routing ``inference.resolving.routing_complexity.in`` (the estimated tokens of the user
text the rule read) and ``.out`` (1: the decision).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from gateway_common.tokens import estimate

__all__ = [
    "GROUNDING_TEMPLATE",
    "STRONG_KEYWORDS",
    "STRONG_PROMPT_CHARS",
    "Chunk",
    "GatewayCache",
    "GatewayView",
    "ProjectGateways",
    "Retriever",
    "apply",
    "choose_model",
    "grounding",
    "line_items",
    "looks_like_gateway",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHORT = re.compile(r"^([a-z0-9][a-z0-9-]{0,63}):([0-9a-f]{4})$")
_PARAMS = ("temperature", "top_p", "max_tokens", "stop")
RETRIEVAL_SKU = "rag.retrieval.queries"
ROUTING_IN_SKU = "inference.resolving.routing_complexity.in"
ROUTING_OUT_SKU = "inference.resolving.routing_complexity.out"

#: How retrieved chunks follow the instructions in the system message; ``{sources}`` is
#: one ``SOURCE_TEMPLATE`` per chunk, best first.
GROUNDING_TEMPLATE = (
    "Answer using the following sources from the knowledge collection. If they do not "
    "contain the answer, say so.\n\n{sources}"
)
SOURCE_TEMPLATE = (
    '<source n="{n}" document="{document_id}" chunk="{chunk_index}">\n{text}\n</source>'
)

#: Routing ``auto``'s rule: the strong model when the user's messages together are longer
#: than this many characters, or one of them contains a ``STRONG_KEYWORDS`` word.
STRONG_PROMPT_CHARS = 1500
STRONG_KEYWORDS = ("explain", "why", "analy", "compare", "prove", "step by step", "code")


def looks_like_gateway(model: str) -> bool:
    """Whether ``model`` is shaped as a gateway reference (a UUID or ``name:xxxx``)."""
    return bool(_UUID.fullmatch(model) or _SHORT.fullmatch(model))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrieved chunk as the apply step uses it."""

    document_id: str
    chunk_index: int
    text: str
    score: float

    def annotation(self) -> dict[str, Any]:
        """The answer's citation of this chunk (``message.annotations[i]``)."""
        return {
            "type": "file_citation",
            "document_id": self.document_id,
            "chunk_index": self.chunk_index,
            "score": self.score,
        }


class Retriever(Protocol):
    """Top chunks of a collection for a query (rag over NATS request/reply, with a deadline).

    Raises ``GatewayError`` (``ServiceUnavailable`` when rag is down or slow); the gateway's
    ``on_rag_failure`` decides what the call does then.
    """

    async def retrieve(
        self, *, project_id: str, collection_id: str, query: str, top_k: int, min_score: float
    ) -> Sequence[Chunk]: ...


@dataclass(frozen=True, slots=True)
class GatewayView:
    """One gateway as a call uses it (built from a ``gateways`` row)."""

    gateway_id: str
    project_id: str
    name: str
    model: str
    instructions: str | None = None
    credential_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    collection_id: str | None = None
    top_k: int = 5
    min_score: float = 0.0
    overridable: frozenset[str] = frozenset()
    routing: Mapping[str, str] | None = None
    on_rag_failure: str = "fail"

    @property
    def short_name(self) -> str:
        return f"{self.name}:{self.gateway_id[:4]}"


@dataclass(frozen=True, slots=True)
class ProjectGateways:
    """A project's gateways by id and by ``name:short`` (oldest first wins a tie)."""

    by_id: Mapping[str, GatewayView] = field(default_factory=lambda: MappingProxyType({}))
    by_short: Mapping[str, GatewayView] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, views: Sequence[GatewayView]) -> ProjectGateways:
        """Index ``views`` (oldest first)."""
        short: dict[str, GatewayView] = {}
        for view in views:
            short.setdefault(view.short_name, view)
        return cls(MappingProxyType({v.gateway_id: v for v in views}), MappingProxyType(short))


class GatewayCache:
    """``project_id -> ProjectGateways``, swapped whole by ``replace``, patched by ``put``/``remove``."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectGateways] = {}

    def __len__(self) -> int:
        return len(self._projects)

    def replace(self, projects: Mapping[str, ProjectGateways]) -> None:
        self._projects = dict(projects)

    def put(self, project_id: str, view: ProjectGateways) -> None:
        self._projects[project_id] = view

    def remove(self, project_id: str) -> None:
        self._projects.pop(project_id, None)

    def find(self, project_id: str, model: str) -> GatewayView | None:
        """The gateway ``model`` names in ``project_id`` (full id or ``name:short``), if any."""
        found = self._projects.get(project_id)
        if found is None:
            return None
        return found.by_id.get(model) or found.by_short.get(model)


def grounding(instructions: str | None, chunks: Sequence[Chunk]) -> str | None:
    """The system message: the instructions, then the chunks in ``GROUNDING_TEMPLATE``."""
    parts = [instructions] if instructions else []
    if chunks:
        sources = "\n".join(
            SOURCE_TEMPLATE.format(
                n=i + 1, document_id=c.document_id, chunk_index=c.chunk_index, text=c.text
            )
            for i, c in enumerate(chunks)
        )
        parts.append(GROUNDING_TEMPLATE.format(sources=sources))
    return "\n\n".join(parts) or None


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def user_text(body: Mapping[str, Any]) -> str:
    """The user messages' text, joined (the retrieval query and the routing input)."""
    messages = body.get("messages") or []
    return "\n".join(_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user")


def last_user_text(body: Mapping[str, Any]) -> str:
    """The last user message's text (what retrieval searches for)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message)
    return ""


def choose_model(view: GatewayView, body: Mapping[str, Any]) -> str:
    """The model that serves ``body``: the gateway's, or routing ``auto``'s pick (see
    ``STRONG_PROMPT_CHARS`` / ``STRONG_KEYWORDS``)."""
    if view.routing is None:
        return view.model
    text = user_text(body)
    lowered = text.lower()
    strong = len(text) > STRONG_PROMPT_CHARS or any(k in lowered for k in STRONG_KEYWORDS)
    return view.routing["strong"] if strong else view.routing["cheap"]


def apply(
    view: GatewayView, body: Mapping[str, Any], chunks: Sequence[Chunk], *, model: str
) -> bytes:
    """The chat completion request ``view`` sends for the client's ``body`` (module docstring)."""
    out = {k: v for k, v in body.items() if k not in (*_PARAMS, "max_completion_tokens")}
    requested = dict(body)
    if "max_tokens" not in requested and "max_completion_tokens" in requested:
        requested["max_tokens"] = requested["max_completion_tokens"]
    for name in _PARAMS:
        if name in view.overridable and requested.get(name) is not None:
            out[name] = requested[name]
        elif name in view.params:
            out[name] = view.params[name]
    messages: list[Any] = []
    system = grounding(view.instructions, chunks)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(body.get("messages") or [])
    prefill = view.params.get("prefill")
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    out["messages"] = messages
    out["model"] = model
    return orjson.dumps(out)


def line_items(
    view: GatewayView, body: Mapping[str, Any], *, retrieved: bool
) -> tuple[tuple[str, int], ...]:
    """The extra SKUs (sku, units) a call through ``view`` consumed (module docstring)."""
    items: list[tuple[str, int]] = []
    if retrieved:
        items.append((RETRIEVAL_SKU, 1))
    if view.routing is not None:
        items.append((ROUTING_IN_SKU, max(estimate(user_text(body)), 1)))
        items.append((ROUTING_OUT_SKU, 1))
    return tuple(items)
