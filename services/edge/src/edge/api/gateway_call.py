"""A chat completion addressed to a seed-002 gateway: retrieve, apply, forward, shape.

``/v1/chat/completions`` hands a body whose ``model`` names a gateway of the
caller's project here, and so do seed 002's ``/api/v1/chat-completions`` and
``/api/v1/chat/completions`` (``routes.ai_gateway``). The flow:

1. retrieval (when the gateway has a collection): ``Retriever.retrieve`` with the
   last user message, the gateway's ``top_k`` and ``min_score``. If rag fails,
   ``on_rag_failure`` ``fail`` answers 503 (OpenAI's shape) and ``ungrounded``
   answers without sources, with ``x-switchyard-grounding: ungrounded``;
2. prompt apply (``edge.gateways.apply``) and the model (``choose_model``);
3. ``Proxy.forward`` with the gateway as the call's ``endpoint`` (its id in the
   usage event), shaped by ``GatewayShaper``: the answer's ``model`` is the model
   that served, each message gets ``annotations`` (document id, chunk index,
   score; in a stream, on the delta of the chunk a choice finishes in). Seed 002's
   own path (``seed=True``) streams ``usage: null`` on every chunk but the usage
   chunk and ends with ``data: [END]``; the OpenAI paths end with ``[DONE]``.

A gateway with ``credential_id`` (and no routing) is served by that project
credential's own endpoint: the call carries that one credential and
``own_endpoint``, so the router sends the gateway's ``model`` verbatim to the
credential's base URL with its key and bills it ``byok`` (only the gateway's line
items, e.g. retrieval, are priced).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import GatewayError, ModelNotFound, ServiceUnavailable
from gateway_common.telemetry import REQUEST_ID

from ..auth import KeyEntry
from ..gateways import (
    Chunk,
    GatewayCache,
    GatewayView,
    Retriever,
    apply,
    choose_model,
    last_user_text,
    line_items,
)
from ..pipeline.limits_step import ModelNotAllowed
from ..rag_client import RagClient
from .proxy import Proxy

__all__ = ["GROUNDING_HEADER", "GatewayShaper", "RagRetriever", "find_gateway", "serve_gateway"]

log = logging.getLogger(__name__)

#: Set to ``ungrounded`` when retrieval failed and the gateway answered without sources.
GROUNDING_HEADER = "x-switchyard-grounding"


class RagRetriever:
    """``Retriever`` over the edge's ``RagClient`` (``rag.query.v1``, its deadline)."""

    def __init__(self, rag: RagClient) -> None:
        self._rag = rag

    async def retrieve(
        self, *, project_id: str, collection_id: str, query: str, top_k: int, min_score: float
    ) -> Sequence[Chunk]:
        reply = await self._rag.query(
            project_id,
            collection_id,
            query,
            top_k=top_k,
            min_score=min_score,
            request_id=REQUEST_ID.get(),
        )
        return [Chunk(c.document_id, c.chunk_index, c.text, c.score) for c in reply.chunks]


def find_gateway(gateways: GatewayCache, key: KeyEntry, model: str) -> GatewayView:
    """The caller's gateway ``model`` names; 404 in OpenAI's shape when unknown or another
    project's (the two are indistinguishable to the caller)."""
    view = gateways.find(key.project_id, model)
    if view is None:
        raise ModelNotFound(f"The gateway '{model}' does not exist in this project.", param="model")
    return view


class GatewayShaper:
    """Shapes a gateway's answer (see the module docstring); one per call."""

    def __init__(self, model: str, chunks: Sequence[Chunk], *, seed: bool) -> None:
        self._model = model
        self._annotations = [c.annotation() for c in chunks]
        self._seed = seed

    async def body(self, body: bytes) -> bytes:
        answer = orjson.loads(body)
        answer["model"] = self._model
        for choice in answer.get("choices") or ():
            message = choice.get("message")
            if isinstance(message, dict):
                message["annotations"] = self._annotations
        return orjson.dumps(answer)

    async def frame(self, chunk: bytes) -> bytes:
        data: dict[str, Any] = orjson.loads(chunk)
        data["model"] = self._model
        for choice in data.get("choices") or ():
            if choice.get("finish_reason") and isinstance(choice.get("delta"), dict):
                choice["delta"]["annotations"] = self._annotations
        if self._seed:
            data.setdefault("usage", None)
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def finish(self) -> bytes:
        return b"data: [END]\n\n" if self._seed else b"data: [DONE]\n\n"


def _metadata(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The request's ``metadata`` as string pairs (OpenAI's shape: string values)."""
    found = body.get("metadata")
    if not isinstance(found, dict):
        return ()
    return tuple(
        (str(k), v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in found.items()
    )


def _own_credential(view: GatewayView) -> str:
    """The credential whose own endpoint serves the gateway's ``model`` ("" for the catalog:
    no ``credential_id``, or routing ``auto``, whose picks are catalog models)."""
    if view.credential_id is None or view.routing is not None:
        return ""
    return view.credential_id


async def _retrieve(
    retriever: Retriever | None, view: GatewayView, body: dict[str, Any]
) -> tuple[Sequence[Chunk], bool | None]:
    """The chunks that ground ``body`` and whether retrieval worked (None: not asked)."""
    if view.collection_id is None:
        return (), None
    query = last_user_text(body)
    if not query.strip():
        return (), None
    try:
        if retriever is None:
            raise ServiceUnavailable("Retrieval is not available.", code="rag_unavailable")
        chunks = await retriever.retrieve(
            project_id=view.project_id,
            collection_id=view.collection_id,
            query=query,
            top_k=view.top_k,
            min_score=view.min_score,
        )
    except GatewayError as err:
        if view.on_rag_failure == "fail":
            raise ServiceUnavailable(
                "The gateway's knowledge collection is unavailable; please retry.",
                code="rag_unavailable",
            ) from err
        log.warning("gateway %s answers ungrounded: %s", view.gateway_id, err.code)
        return (), False
    return chunks, True


async def serve_gateway(
    request: Request,
    proxy: Proxy,
    key: KeyEntry,
    view: GatewayView,
    raw: bytes,
    *,
    retriever: Retriever | None,
    seed: bool,
) -> Response:
    """Answer the client's chat body ``raw`` through gateway ``view`` (module docstring)."""
    body: dict[str, Any] = orjson.loads(raw)
    own_credential = _own_credential(view)
    if own_credential and key.allowed_models is not None:
        # allowed_models holds catalog names only (saving another is 400), and an own
        # endpoint's model is none: a restricted key cannot call it, refused before retrieval.
        raise ModelNotAllowed(
            f"This API key is not allowed to use the gateway '{view.short_name}': it is served "
            "by the project's own endpoint, and the key's allowed_models lists catalog models.",
            param="model",
        )
    chunks, grounded = await _retrieve(retriever, view, body)
    model = choose_model(view, body)
    stream = bool(body.get("stream"))
    if seed and stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    sent = apply(view, body, chunks, model=model)
    max_tokens = orjson.loads(sent).get("max_tokens")
    response = await proxy.forward(
        request,
        router_pb2.OPERATION_CHAT_COMPLETIONS,
        model=model,
        body=sent,
        stream=stream,
        key=key,
        shaper=GatewayShaper(model, chunks, seed=seed),
        max_output_tokens=max_tokens if isinstance(max_tokens, int) else None,
        choices=body.get("n") or 1,
        endpoint=view.short_name,
        endpoint_id=view.gateway_id,
        sku_usage=line_items(view, body, retrieved=grounded is True),
        metadata=_metadata(body),
        own_credential=own_credential,
    )
    response.headers["x-switchyard-gateway"] = view.gateway_id
    if grounded is False:
        response.headers[GROUNDING_HEADER] = "ungrounded"
    return response
