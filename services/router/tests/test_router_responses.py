"""The Responses API over chat completions: pure translation both ways, the stream's
events, and the service serving it end to end over a faked provider."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_common import tokens
from gateway_common.catalog import Catalog, ProviderEntry
from gateway_common.errors import ContextLengthExceeded, InvalidRequest, ProviderUnavailable
from router.catalog import LiveCatalog
from router.failover import Failover, RouteInfo
from router.metrics import RouterMetrics
from router.providers.base import ProviderAdapter, Usage
from router.providers.registry import build_adapters
from router.responses import to_chat_request, to_response
from router.responses_stream import ResponseEvents
from router.service import Call, RouterService
from router.usage import Payer, Status

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "openai"


class Recorder:
    """In-memory usage sink: what would have been published."""

    def __init__(self) -> None:
        self.calls: list[tuple[Payer, str, RouteInfo, Usage | None, Status]] = []

    async def record(
        self,
        payer: Payer,
        operation: Any,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> None:
        self.calls.append((payer, operation, route, usage, status))


def _ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


# -- request translation ---------------------------------------------------------------------


def test_string_input_and_instructions_become_system_and_user_messages() -> None:
    chat = to_chat_request(
        {"model": "m", "instructions": "Be brief.", "input": "Hi", "temperature": 0.2}
    )
    assert chat == {
        "model": "m",
        "temperature": 0.2,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }


def test_items_become_a_conversation_with_tool_calls_and_results() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And this?"},
                    {"type": "input_image", "image_url": "https://x/i.png", "detail": "low"},
                ],
            },
        ],
    }
    messages = to_chat_request(body)["messages"]
    assert messages == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "low"}},
            ],
        },
    ]


def test_parameters_are_mapped_and_gateway_fields_are_not_sent() -> None:
    schema = {"type": "object", "properties": {}}
    chat = to_chat_request(
        {
            "model": "m",
            "input": "Hi",
            "max_output_tokens": 50,
            "tools": [{"type": "function", "name": "f", "parameters": schema, "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": schema}},
            "reasoning": {"effort": "low"},
            "store": True,
            "metadata": {"k": "v"},
            "previous_response_id": "resp_1",
            "truncation": "disabled",
            "future_knob": 7,
        }
    )
    assert chat == {
        "model": "m",
        "future_knob": 7,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 50,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "reasoning_effort": "low",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search_preview"}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"background": True}, "background"),
        ({"input": [{"role": "user", "content": [{"type": "bogus"}]}]}, "input[0].content[0]"),
    ],
)
def test_what_chat_completions_cannot_express_is_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat_request({"model": "m", "input": "Hi", **body})
    assert caught.value.param == param


# -- answer translation ------------------------------------------------------------------------


def test_a_chat_completion_becomes_a_response_object() -> None:
    chat = orjson.loads((FIXTURES / "chat_plain.json").read_bytes())
    request = {"model": "m", "input": "Hi", "instructions": "I", "metadata": {"k": "v"}}
    usage = Usage(prompt_tokens=19, completion_tokens=10, total_tokens=29, cached_tokens=4)
    response = to_response(chat, request, usage, response_id="resp_x", created_at=5, ids=_ids())
    body = response.model_dump(mode="json")
    text = chat["choices"][0]["message"]["content"]
    assert body["output"] == [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    ]
    assert (body["id"], body["object"], body["created_at"], body["status"]) == (
        "resp_x",
        "response",
        5,
        "completed",
    )
    assert (body["instructions"], body["metadata"], body["previous_response_id"]) == (
        "I",
        {"k": "v"},
        None,
    )
    assert body["usage"] == {
        "input_tokens": 19,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 29,
    }


def test_tool_calls_become_function_call_items_and_length_is_incomplete() -> None:
    chat = orjson.loads((FIXTURES / "chat_parallel_tool_calls.json").read_bytes())
    calls = chat["choices"][0]["message"]["tool_calls"]
    response = to_response(chat, {"model": "m"}, None, response_id="r", created_at=1, ids=_ids())
    items = [item.model_dump() for item in response.output if item.type == "function_call"]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in items] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls
    ]
    chat["choices"][0]["finish_reason"] = "length"
    cut = to_response(chat, {"model": "m"}, None, response_id="r", created_at=1)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_a_completion_without_choices_is_a_provider_failure() -> None:
    with pytest.raises(ProviderUnavailable):
        to_response({"choices": []}, {"model": "m"}, None, response_id="r", created_at=1)


# -- stream events -------------------------------------------------------------------------------


def _chunks(fixture: str) -> list[bytes]:
    lines = (FIXTURES / fixture).read_bytes().splitlines()
    data = [line[6:] for line in lines if line.startswith(b"data: ") and line != b"data: [DONE]"]
    return [d for d in data if orjson.loads(d).get("choices")]


def _run(fixture: str) -> list[dict[str, Any]]:
    events = ResponseEvents({"model": "m", "input": "Hi"}, response_id="resp_s", ids=_ids())
    out = events.start()
    for chunk in _chunks(fixture):
        out += events.feed(chunk)
    out += events.finish(Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7))
    return [orjson.loads(event) for event in out]


def test_a_text_stream_yields_the_responses_event_sequence() -> None:
    events = _run("stream_plain.sse")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 0
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-4]["text"] == text
    completed = events[-1]["response"]
    assert completed["id"] == events[0]["response"]["id"] == "resp_s"
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == text
    assert completed["usage"]["total_tokens"] == 7
    assert events[0]["response"]["status"] == "in_progress"


def test_text_then_a_tool_call_stream_as_two_items() -> None:
    events = _run("stream_text_and_tool_call.sse")
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    call = events[-2]["item"]
    assert (call["type"], call["call_id"], call["name"], call["arguments"]) == (
        "function_call",
        "call_9",
        "lookup",
        '{"q": "x"}',
    )
    assert events[-2]["output_index"] == 1
    assert [item["type"] for item in events[-1]["response"]["output"]] == [
        "message",
        "function_call",
    ]


def test_streamed_tool_call_arguments_are_assembled() -> None:
    events = _run("stream_tool_call.sse")
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert len(deltas) > 1
    assert done["arguments"] == "".join(deltas)


# -- the service, end to end over a faked provider ------------------------------------------------

CATALOG = """
version: 1
providers:
  fake: {kind: openai, base_url: "https://fake.test/v1"}
  down: {kind: openai, base_url: "https://down.test/v1"}
  full: {kind: openai, base_url: "https://full.test/v1"}
models:
  crammed:
    deployments: [{provider: full, model: fake-thinker}, {provider: fake, model: fake-thinker}]
    capabilities: [chat, responses, streaming]
  relay:
    deployments: [{provider: down, model: fake-thinker}, {provider: fake, model: fake-thinker}]
    capabilities: [chat, responses, streaming]
  thinker:
    deployments: [{provider: fake, model: fake-thinker}]
    capabilities: [chat, responses, streaming]
  talker:
    deployments: [{provider: fake, model: fake-talker}]
    capabilities: [chat, streaming]
"""


class Provider:
    """The faked provider: records chat requests, answers from the recorded fixtures."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        if request.url.host == "down.test":
            return httpx.Response(500, content=(FIXTURES / "error_500.json").read_bytes())
        if request.url.host == "full.test":
            overflow = (FIXTURES / "error_context_length.json").read_bytes()
            return httpx.Response(400, content=overflow)
        body = orjson.loads(request.content)
        self.bodies.append(body)
        fixture = "stream_plain.sse" if body.get("stream") else "chat_plain.json"
        return httpx.Response(200, content=(FIXTURES / fixture).read_bytes())


@pytest.fixture
async def served(
    tmp_path: Path, metrics: RouterMetrics
) -> AsyncIterator[tuple[RouterService, Provider, Recorder]]:
    provider = Provider()
    transport = httpx.MockTransport(provider)

    def build(
        catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
    ) -> Mapping[str, ProviderAdapter]:
        return build_adapters(catalog, {}, reuse=reuse, transport=transport)

    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    live = LiveCatalog(path, build, metrics)
    await live.load()
    recorder = Recorder()
    try:
        yield RouterService(live, Failover(metrics), recorder), provider, recorder
    finally:
        await live.aclose()


def _call(model: str, **body: Any) -> Call:
    payload = {"model": model, "instructions": "Be brief.", "input": "Hi", **body}
    return Call("responses", model, payload, Payer("req", "proj", "key", byok=False))


@pytest.mark.timeout(10)
async def test_a_model_without_the_capability_is_refused(
    served: tuple[RouterService, Provider, Recorder],
) -> None:
    service, provider, _ = served
    with pytest.raises(InvalidRequest) as caught:
        await service.complete(_call("talker"), deadline=None)
    assert caught.value.message == "The model `talker` does not support the Responses API."
    assert caught.value.http_status == 400
    assert provider.bodies == []


@pytest.mark.timeout(10)
async def test_unary_is_served_as_a_chat_completion_and_billed_as_responses(
    served: tuple[RouterService, Provider, Recorder],
) -> None:
    service, provider, recorder = served
    completion, _ = await service.complete(_call("thinker", store=False), deadline=None)
    body = orjson.loads(completion.body)
    assert body["object"] == "response" and body["id"].startswith("resp_")
    assert body["store"] is False and body["output"][0]["type"] == "message"
    [sent] = provider.bodies
    assert sent["model"] == "fake-thinker"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "store" not in sent and "input" not in sent
    [(_, operation, route, usage, status)] = recorder.calls
    assert (operation, route.model, status) == ("responses", "thinker", "ok")
    assert usage is not None and body["usage"]["input_tokens"] == usage.prompt_tokens


@pytest.mark.timeout(10)
async def test_stream_yields_route_then_responses_events_then_usage(
    served: tuple[RouterService, Provider, Recorder],
) -> None:
    service, provider, recorder = served
    events = [event async for event in service.stream(_call("thinker"), deadline=None)]
    assert isinstance(events[0], RouteInfo) and isinstance(events[-1], Usage)
    kinds = [orjson.loads(e)["type"] for e in events[1:-1] if isinstance(e, bytes)]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert all(e.startswith(b'{"type":"') for e in events[1:-1] if isinstance(e, bytes))
    assert provider.bodies[0]["stream"] is True
    assert recorder.calls[0][1] == "responses"


@pytest.mark.timeout(10)
async def test_a_chain_survives_failover_to_another_deployment(
    served: tuple[RouterService, Provider, Recorder],
) -> None:
    service, provider, _ = served
    history = [
        {"id": "msg_1", "type": "message", "role": "user", "content": "2 + 5?"},
        {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "7", "annotations": []}],
        },
        {"id": "msg_3", "type": "message", "role": "user", "content": "Times 2?"},
    ]
    call = _call("relay", input=history, previous_response_id="resp_prev")
    completion, info = await service.complete(call, deadline=None)
    assert (info.provider, info.attempts) == ("fake", 2)
    assert orjson.loads(completion.body)["previous_response_id"] == "resp_prev"
    assert [m["content"] for m in provider.bodies[-1]["messages"]] == [
        "Be brief.",
        "2 + 5?",
        "7",
        "Times 2?",
    ]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("streaming", [False, True])
async def test_a_providers_context_length_refusal_is_worded_for_responses(
    served: tuple[RouterService, Provider, Recorder], streaming: bool
) -> None:
    """OpenAI's Responses refusal (param ``input``, its own message), with no failover to the
    model's second deployment: its window is the same."""
    service, provider, recorder = served
    with pytest.raises(ContextLengthExceeded) as caught:
        if streaming:
            [e async for e in service.stream(_call("crammed", stream=True), deadline=None)]
        else:
            await service.complete(_call("crammed"), deadline=None)
    err = caught.value
    assert (err.http_status, err.code, err.param) == (400, "context_length_exceeded", "input")
    assert err.message == tokens.RESPONSES_OVERFLOW
    assert provider.bodies == [] and recorder.calls == []
