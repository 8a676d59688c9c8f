"""``GET /v1/models`` and ``GET /v1/models/{id}``: the router's catalog in OpenAI's shape."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.router.v1 import router_pb2
from gateway_common.errors import ModelNotFound
from gateway_common.openai import Model, ModelList, ModelPricing

from ..deps import ApiKeyDep, RouterClientDep

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])


def _to_model(info: router_pb2.ModelInfo) -> Model:
    return Model(
        id=info.id,
        created=info.created,
        owned_by=info.owned_by,
        provider=info.provider,
        context_window=info.context_window,
        max_output_tokens=info.max_output_tokens,
        pricing=ModelPricing(
            input=info.input_price_per_token or "0",
            output=info.output_price_per_token or "0",
            cached_input=info.cached_input_price_per_token or None,
        ),
        capabilities=list(info.capabilities),
        aliases=list(info.aliases),
    )


@router.get("", response_model=ModelList)
async def list_models(_: ApiKeyDep, client: RouterClientDep) -> ModelList:
    """List every model the gateway serves."""
    return ModelList(data=[_to_model(info) for info in await client.list_models()])


@router.get("/{model_id:path}", response_model=Model)
async def retrieve_model(model_id: str, _: ApiKeyDep, client: RouterClientDep) -> Model:
    """One model, by id or alias."""
    for info in await client.list_models():
        if model_id == info.id or model_id in info.aliases:
            return _to_model(info)
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
