"""``GET /v1/models`` and ``GET /v1/models/{id}``: the router's catalog in OpenAI's shape.

A key with ``allowed_models`` sees only the models it may call (another is 404, as
OpenAI answers for a model the caller has no access to). Neither route is rate limited.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.router.v1 import router_pb2
from gateway_common.errors import ModelNotFound
from gateway_common.openai import Model, ModelList, ModelPricing

from ...auth import KeyEntry
from ...pipeline.limits_step import LimitsStep
from ..deps import ApiKeyDep, LimitsDep, RouterClientDep

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


def _visible(limits: LimitsStep, key: KeyEntry, info: router_pb2.ModelInfo) -> bool:
    return limits.allows(key, info.id)


@router.get("", response_model=ModelList)
async def list_models(key: ApiKeyDep, client: RouterClientDep, limits: LimitsDep) -> ModelList:
    """List every model the gateway serves that the key may call."""
    infos = await client.list_models()
    return ModelList(data=[_to_model(i) for i in infos if _visible(limits, key, i)])


@router.get("/{model_id:path}", response_model=Model)
async def retrieve_model(
    model_id: str, key: ApiKeyDep, client: RouterClientDep, limits: LimitsDep
) -> Model:
    """One model, by id or alias (if the key may call it)."""
    for info in await client.list_models():
        if (model_id == info.id or model_id in info.aliases) and _visible(limits, key, info):
            return _to_model(info)
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
