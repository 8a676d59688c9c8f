"""``POST /v1/embeddings`` (scope ``embeddings``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.openai import EmbeddingRequest

from ...state import EdgeState
from ..deps import EmbeddingsCallDep, ProxyDep, routed_caller
from ..openapi import request_body

__all__ = ["hot", "router"]

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post(
    "/embeddings",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(EmbeddingRequest),
)
async def create_embeddings(request: Request, key: EmbeddingsCallDep, proxy: ProxyDep) -> Response:
    """Embed one input or a batch."""
    raw, body = await proxy.read(request, EmbeddingRequest, key)
    return await proxy.forward(
        request, router_pb2.OPERATION_EMBEDDINGS, model=body.model, body=raw, stream=False, key=key
    )


async def hot(request: Request, state: EdgeState) -> Response:
    """``create_embeddings`` with its dependencies resolved by hand (``api.hot``)."""
    key = await routed_caller(request, state, "embeddings")
    return await create_embeddings(request, key, state.proxy)
