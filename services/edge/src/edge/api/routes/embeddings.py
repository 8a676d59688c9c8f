"""``POST /v1/embeddings`` (scope ``embeddings``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.openai import EmbeddingRequest

from ..deps import EmbeddingsCallDep, ProxyDep

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post("/embeddings", response_class=Response, response_model=None)
async def create_embeddings(request: Request, key: EmbeddingsCallDep, proxy: ProxyDep) -> Response:
    """Embed one input or a batch."""
    raw, body = await proxy.read(request, EmbeddingRequest, key)
    return await proxy.forward(
        request, router_pb2.OPERATION_EMBEDDINGS, model=body.model, body=raw, stream=False, key=key
    )
