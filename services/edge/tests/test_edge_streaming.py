"""Over a real socket (uvicorn): cancellation on hang-up, and the OpenAI SDK as the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest
import uvicorn

from edge import EdgeSettings, create_app
from gateway_common.errors import ModelNotFound

from .support import (
    KEYS,
    RouterServer,
    auth,
    chunk_event,
    eventually,
    free_port,
    route_event,
    seed_keys,
    usage_event,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def base_url(settings: EdgeSettings) -> AsyncIterator[str]:
    await seed_keys(settings.resolved_database_url())
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_client_disconnect_cancels_the_grpc_call(base_url: str, router: RouterServer) -> None:
    router.servicer.stream_events = [route_event(), chunk_event(b'{"n":1}'), None]
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    async with (
        httpx.AsyncClient(base_url=base_url) as client,
        client.stream("POST", "/v1/chat/completions", content=body, headers=auth()) as resp,
    ):
        assert resp.status_code == 200
        lines = resp.aiter_lines()
        assert await anext(lines) == 'data: {"n":1}'
    # Leaving the block closed the connection while the router was still streaming.

    async def cancelled() -> bool:
        return router.servicer.cancelled.is_set()

    await eventually(cancelled)


async def test_openai_sdk_reads_stream_and_errors(base_url: str, router: RouterServer) -> None:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "mock-chat",
        "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}],
    }
    router.servicer.stream_events = [route_event(), chunk_event(orjson.dumps(chunk)), usage_event()]
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=KEYS["all"][0], max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        texts = [c.choices[0].delta.content async for c in stream]
        assert texts == ["hello"]

        router.servicer.error = ModelNotFound("The model 'x' does not exist.", param="model")
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.code == "model_not_found"
