"""The Responses API (scope ``responses``): create, retrieve, delete, list input items.

Chains are the gateway's (``edge.chains``): a create expands its
``previous_response_id`` from sessions and stores the answer before the client
gets it. Every id is looked up within the caller's project, so another
project's response is a 404 that says nothing about it. A bearer-passthrough
caller (``edge.passthrough``) may create responses but has no project: it
cannot chain or store, and the other routes are 401 for it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.router.v1 import router_pb2
from gateway_common.openai import InputItemList, ResponseDeleted, ResponsesRequest

from ... import chains, passthrough
from ...state import EdgeState
from ..deps import ProxyDep, ResponsesCallDep, ResponsesKeyDep, SessionsDep, routed_caller
from ..openapi import request_body

__all__ = ["hot", "router"]

router = APIRouter(prefix="/v1", tags=["responses"])


@router.post(
    "/responses",
    response_class=Response,
    response_model=None,
    openapi_extra=request_body(ResponsesRequest),
)
async def create_response(
    request: Request, key: ResponsesCallDep, proxy: ProxyDep, sessions: SessionsDep
) -> Response:
    """Create a model response; ``"stream": true`` answers with Responses events."""
    raw, body = await proxy.read(request, ResponsesRequest, key)
    if key.passthrough:
        body = passthrough.responses_request(body)  # no chain, nothing stored
    turn = await chains.expand(raw, body, project_id=key.project_id, sessions=sessions)
    return await proxy.forward(
        request,
        router_pb2.OPERATION_RESPONSES,
        model=body.model,
        body=turn.body,
        stream=body.stream,
        key=key,
        shaper=chains.ChainRecorder(turn, sessions),
        max_output_tokens=body.max_output_tokens,
    )


async def hot(request: Request, state: EdgeState) -> Response:
    """``create_response`` with its dependencies resolved by hand (``api.hot``)."""
    key = await routed_caller(request, state, "responses")
    return await create_response(request, key, state.proxy, state.sessions)


@router.get("/responses/{response_id}", response_class=Response, response_model=None)
async def retrieve_response(
    response_id: str, key: ResponsesKeyDep, sessions: SessionsDep
) -> Response:
    """The stored Response object."""
    record = await chains.stored_response(sessions, key.project_id, response_id)
    return Response(orjson.dumps(record.response), media_type="application/json")


@router.delete("/responses/{response_id}", response_model=ResponseDeleted)
async def delete_response(
    response_id: str, key: ResponsesKeyDep, sessions: SessionsDep
) -> ResponseDeleted:
    """Delete a stored response; a later ``previous_response_id`` to it is a 404."""
    if not await sessions.delete(key.project_id, response_id):
        raise chains.response_not_found(response_id)
    return ResponseDeleted(id=response_id)


@router.get("/responses/{response_id}/input_items", response_model=InputItemList)
async def list_input_items(
    response_id: str,
    key: ResponsesKeyDep,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> InputItemList:
    """The input the model saw for this response (the chain before it included)."""
    record = await chains.stored_response(sessions, key.project_id, response_id)
    return chains.input_item_page(record.input_items, limit=limit, order=order, after=after)
