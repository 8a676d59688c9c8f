"""``GET /v1/models`` and ``GET /v1/models/{id}``: the router's catalog in OpenAI's shape.

A key with ``allowed_models`` sees only the models it may call (another is 404, as
OpenAI answers for a model the caller has no access to). Neither route is rate limited.

A request carrying ``anthropic-version`` (Anthropic's SDKs send it on every call)
gets Anthropic's shapes instead: ``{"data": [{"type": "model", "id",
"display_name", "created_at"}], "has_more", "first_id", "last_id"}``, one such
model object, and Anthropic's error shape (``AnthropicVersionRoute``). The list
is the whole catalog on one page (``limit``/``after_id`` are not paged).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.errors import ModelNotFound
from gateway_common.openai import Model, ModelList, ModelPricing

from ...anthropic import ANTHROPIC_VERSION_HEADER, AnthropicVersionRoute
from ...auth import KeyEntry
from ...pipeline.limits_step import LimitsStep
from ..deps import ApiKeyDep, LimitsDep, RouterClientDep

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=AnthropicVersionRoute)


def _anthropic_model(info: router_pb2.ModelInfo) -> dict[str, Any]:
    created = datetime.fromtimestamp(info.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": info.id, "display_name": info.id, "created_at": created}


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


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
async def list_models(
    request: Request, key: ApiKeyDep, client: RouterClientDep, limits: LimitsDep
) -> ModelList | Response:
    """List every model the gateway serves that the key may call."""
    infos = [i for i in await client.list_models() if _visible(limits, key, i)]
    if ANTHROPIC_VERSION_HEADER in request.headers:
        data = [_anthropic_model(info) for info in infos]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return _json({"data": data, "has_more": False, "first_id": first, "last_id": last})
    return ModelList(data=[_to_model(info) for info in infos])


@router.get("/{model_id:path}", response_model=Model)
async def retrieve_model(
    request: Request, model_id: str, key: ApiKeyDep, client: RouterClientDep, limits: LimitsDep
) -> Model | Response:
    """One model, by id or alias (if the key may call it)."""
    for info in await client.list_models():
        if (model_id == info.id or model_id in info.aliases) and _visible(limits, key, info):
            if ANTHROPIC_VERSION_HEADER in request.headers:
                return _json(_anthropic_model(info))
            return _to_model(info)
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
