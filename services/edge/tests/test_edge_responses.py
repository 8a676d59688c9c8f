"""``/v1/responses`` at the edge: body checks, chains expanded from sessions, storage before
the answer, event framing, and 404/503 paths.

The router is the scripted gRPC servicer (answering with Response objects
built from the request); sessions is the real service, run as a process on
the tests' NATS with its own SQLite file.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import nats
import orjson
import pytest
from nats.aio.client import Client

from edge.sessions_client import SessionsClient
from gateway.router.v1 import router_pb2
from gateway_common import subjects
from gateway_common.errors import ServiceUnavailable
from gateway_common.testing import health_reply, service_process, wait_for

from .support import (
    Edge,
    RouterServer,
    ScriptedRouter,
    auth,
    batch_event,
    route_event,
    serve_router,
    usage_event,
)

pytestmark = pytest.mark.timeout(60)

_IDS = itertools.count(1)


def _response(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": f"resp_{next(_IDS)}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body["model"],
        "output": [
            {
                "type": "message",
                "id": f"msg_{next(_IDS)}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "previous_response_id": body.get("previous_response_id"),
        "metadata": body.get("metadata") or {},
    }


class ResponsesRouter(ScriptedRouter):
    """Answers a Responses call with a Response whose text counts the input items it got."""

    async def Complete(
        self, request: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CompleteResponse:
        self._record(request, context)
        body = orjson.loads(request.body)
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        answer = _response(body, f"saw {len(items)} items")
        return router_pb2.CompleteResponse(body=orjson.dumps(answer))


@pytest.fixture
async def router() -> AsyncIterator[RouterServer]:
    async with serve_router(ResponsesRouter()) as server:
        yield server


@pytest.fixture(scope="module")
def sessions_log(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sessions service, running for this module's tests; yields its log path."""
    tmp = tmp_path_factory.mktemp("sessions")
    env = {"NATS_URL": nats_url, "GATEWAY_DATABASE_URL": f"sqlite:///{tmp / 'sessions.db'}"}
    log = tmp / "sessions.log"
    with service_process("sessions", env, log_path=log):
        yield log


@pytest.fixture
async def sessions(nats_url: str, sessions_log: Path) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url)
    try:
        await wait_for(lambda: health_reply(nc, "sessions"), timeout_s=30)
        yield nc
    finally:
        await nc.close()


async def _create(edge: Edge, **body: Any) -> Any:
    return await edge.client.post(
        "/v1/responses", json={"model": "mock-reasoning", **body}, headers=auth()
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi"}, "model"),
        ({"model": "", "input": "Hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "function_call_output"}]}, "input[0].call_id"),
        ({"model": "m", "input": "Hi", "store": "yes"}, "store"),
        ({"model": "m", "input": "Hi", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ],
)
async def test_a_malformed_body_is_a_400_naming_the_field(
    edge: Edge, router: RouterServer, body: dict[str, Any], param: str
) -> None:
    resp = await edge.client.post("/v1/responses", json=body, headers=auth())
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert router.servicer.calls == []


async def test_the_responses_scope_is_required(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/responses", json={"model": "m", "input": "Hi"}, headers=auth("embed")
    )
    assert resp.status_code == 403
    assert "'responses' scope" in resp.json()["error"]["message"]


async def test_without_sessions_chains_and_storage_are_503_never_500(
    edge: Edge, router: RouterServer
) -> None:
    chained = await _create(edge, input="Hi", previous_response_id="resp_1")
    assert chained.status_code == 503
    assert chained.json()["error"]["type"] == "api_error"
    assert router.servicer.calls == []
    stored = await _create(edge, input="Hi")
    assert stored.status_code == 503
    assert (await edge.client.get("/v1/responses/resp_1", headers=auth())).status_code == 503
    # Nothing to look up and nothing to store: sessions is not needed.
    unstored = await _create(edge, input="Hi", store=False)
    assert unstored.status_code == 200
    assert orjson.loads(router.servicer.calls[-1][0].body)["input"] == "Hi"


async def test_a_stream_that_cannot_be_stored_ends_in_band_after_the_events_before(
    edge: Edge, router: RouterServer
) -> None:
    # Sessions is not running yet (as above): storing response.completed fails mid-batch.
    response = _response({"model": "mock-reasoning"}, "Hello")
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**response, "output": []}},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hello"},
        {"type": "response.completed", "sequence_number": 2, "response": response},
    ]
    router.servicer.stream_events = [
        route_event(),
        batch_event(*(orjson.dumps(e) for e in events)),
        usage_event(),
    ]
    resp = await _create(edge, input="Hi", stream=True)
    assert resp.status_code == 200
    frames = resp.content.decode().split("\n\n")
    assert frames[:2] == [
        f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}" for e in events[:2]
    ]
    assert orjson.loads(frames[2].removeprefix("data: "))["error"]["type"] == "api_error"
    assert frames[3:] == [""]


async def test_a_silent_responder_times_out_as_503(nats_url: str) -> None:
    """A sessions replica stuck on its database: the request ends at the deadline."""
    nc = await nats.connect(nats_url)
    try:
        await nc.subscribe(subjects.RESPONSES_GET, queue="stuck", cb=_never_answer)
        with pytest.raises(ServiceUnavailable):
            await SessionsClient(nc, timeout_s=0.2).get("p", "resp_1")
    finally:
        await nc.close()


async def _never_answer(_msg: Any) -> None:
    return None


async def test_unknown_previous_response_is_openais_404(
    edge: Edge, router: RouterServer, sessions: Client
) -> None:
    resp = await _create(edge, input="Hi", previous_response_id="resp_nope")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "Response with id 'resp_nope' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "not_found",
        }
    }
    assert router.servicer.calls == []


async def test_a_chain_is_expanded_stored_listed_and_deleted(
    edge: Edge, router: RouterServer, sessions: Client
) -> None:
    first = (await _create(edge, instructions="Be brief.", input="One")).json()
    second_resp = await _create(
        edge, input=[{"role": "user", "content": "Two"}], previous_response_id=first["id"]
    )
    second = second_resp.json()
    assert second_resp.status_code == 200, second_resp.text
    assert second["output"][0]["content"][0]["text"] == "saw 3 items"
    sent = orjson.loads(router.servicer.calls[-1][0].body)
    assert sent["previous_response_id"] == first["id"] and "instructions" not in sent
    assert [item["type"] for item in sent["input"]] == ["message"] * 3
    assert sent["input"][1] == first["output"][0]

    got = await edge.client.get(f"/v1/responses/{second['id']}", headers=auth())
    assert got.json() == second
    page = await edge.client.get(
        f"/v1/responses/{second['id']}/input_items", params={"limit": 2}, headers=auth()
    )
    listed = page.json()
    assert [item["id"] for item in listed["data"]] == [
        sent["input"][2]["id"],
        first["output"][0]["id"],
    ]
    assert listed["has_more"] is True and listed["last_id"] == first["output"][0]["id"]
    assert listed["data"][0]["content"] == [{"type": "input_text", "text": "Two"}]

    deleted = await edge.client.delete(f"/v1/responses/{first['id']}", headers=auth())
    assert deleted.json() == {"id": first["id"], "object": "response", "deleted": True}
    again = await edge.client.delete(f"/v1/responses/{first['id']}", headers=auth())
    assert again.status_code == 404
    assert (await _create(edge, input="x", previous_response_id=first["id"])).status_code == 404


async def test_a_stream_is_framed_as_events_and_stored_before_it_completes(
    edge: Edge, router: RouterServer, sessions: Client
) -> None:
    response = _response({"model": "mock-reasoning"}, "Hello")
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**response, "output": []}},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hello"},
        {"type": "response.completed", "sequence_number": 2, "response": response},
    ]
    router.servicer.stream_events = [  # one batch: the shaper still frames event by event
        route_event(),
        batch_event(*(orjson.dumps(e) for e in events)),
        usage_event(),
    ]
    async with edge.client.stream(
        "POST",
        "/v1/responses",
        json={"model": "mock-reasoning", "input": "Hi", "stream": True},
        headers=auth(),
    ) as resp:
        assert resp.status_code == 200
        body = (await resp.aread()).decode()
    assert body == "".join(
        f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}\n\n" for e in events
    )
    stored = await edge.client.get(f"/v1/responses/{response['id']}", headers=auth())
    assert stored.json() == response
