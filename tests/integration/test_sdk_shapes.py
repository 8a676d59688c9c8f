"""Every answer shape ``/v1`` sends, read by the official ``openai`` SDK's own typed models.

The SDK's response classes are pydantic models of OpenAI's API reference;
``model_validate`` (not ``construct``) checks each required field and its type.
Each test also holds the answer to the reference's field list where the
gateway, not the provider, builds the object (Responses, models, errors), and
to the chunk sequence OpenAI sends (a ``choices: []`` chunk only for
``include_usage``), so a client that reads ``chunk.choices[0]`` never crashes.
docs/openai-compatibility.md lists what the gateway knowingly does differently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from openai.types.shared import ErrorObject
from pydantic import TypeAdapter

from tests.integration.helpers import sse_data

pytestmark = pytest.mark.integration

_NODE_DIR = Path(__file__).with_name("node")
_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
#: The fields of OpenAI's reference objects that the gateway builds itself.
_RESPONSE_FIELDS = {
    "id", "object", "created_at", "status", "error", "incomplete_details", "instructions",
    "model", "output", "parallel_tool_calls", "previous_response_id", "metadata", "usage",
    "max_output_tokens", "reasoning", "store", "temperature", "text", "tool_choice", "tools",
    "top_p", "truncation", "user",
}  # fmt: skip
_MODEL_FIELDS = {"id", "object", "created", "owned_by"}
_ERROR_FIELDS = {"message", "type", "param", "code"}


def _marker() -> str:
    return uuid.uuid4().hex[:12]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def http(base_url: str, api_key: str) -> Iterator[httpx.Client]:
    """Raw HTTP to ``/v1`` with the dev key, for the bytes the SDK would parse."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=f"{base_url}/v1", headers=headers, timeout=30) as client:
        yield client


def _stream_chunks(http: httpx.Client, body: dict[str, Any]) -> list[ChatCompletionChunk]:
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as answer:
        assert answer.status_code == 200, answer.read()
        data = sse_data(answer.iter_lines())
    assert data[-1] == "[DONE]"
    return [ChatCompletionChunk.model_validate_json(item) for item in data[:-1]]


def test_chat_completion_is_a_typed_chat_completion(http: httpx.Client) -> None:
    answer = http.post("/chat/completions", json={"model": "mock-chat", "messages": _user("hi")})
    completion = ChatCompletion.model_validate_json(answer.content)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_chat_tool_calls_are_typed_tool_calls(http: httpx.Client) -> None:
    body = {"model": "mock-chat", "messages": _user("weather in Paris"), "tools": _TOOLS}
    completion = ChatCompletion.model_validate_json(
        http.post("/chat/completions", json={**body, "tool_choice": "required"}).content
    )
    calls = completion.choices[0].message.tool_calls
    assert calls, completion
    assert calls[0].type == "function" and calls[0].function.name == "get_weather"
    orjson.loads(calls[0].function.arguments)  # arguments are a JSON string


@pytest.mark.parametrize("tools", [False, True], ids=["plain", "tools"])
def test_a_stream_without_include_usage_has_choices_in_every_chunk(
    http: httpx.Client, tools: bool
) -> None:
    body: dict[str, Any] = {"model": "mock-chat", "messages": _user(f"hi {_marker()}")}
    if tools:
        body |= {"tools": _TOOLS, "tool_choice": "required"}
    chunks = _stream_chunks(http, body)
    assert all(chunk.choices for chunk in chunks), [c.model_dump() for c in chunks]
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


@pytest.mark.parametrize("tools", [False, True], ids=["plain", "tools"])
def test_include_usage_adds_exactly_one_final_usage_chunk(http: httpx.Client, tools: bool) -> None:
    body: dict[str, Any] = {
        "model": "mock-chat",
        "messages": _user(f"hi {_marker()}"),
        "stream_options": {"include_usage": True},
    }
    if tools:
        body |= {"tools": _TOOLS, "tool_choice": "required"}
    chunks = _stream_chunks(http, body)
    *content, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0
    assert all(chunk.choices for chunk in content)


def test_the_sdk_stream_iterates_choices_zero_on_every_chunk(
    openai_client: openai.OpenAI,
) -> None:
    stream = openai_client.chat.completions.create(
        model="mock-chat", messages=_user("count"), stream=True
    )  # type: ignore[call-overload]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text


def test_responses_answers_and_stored_objects_are_typed(
    http: httpx.Client, openai_client: openai.OpenAI
) -> None:
    answer = http.post("/responses", json={"model": "mock-reasoning", "input": "hi"})
    assert answer.status_code == 200, answer.text
    response = Response.model_validate_json(answer.content)
    assert set(orjson.loads(answer.content)) >= _RESPONSE_FIELDS
    assert response.status == "completed" and response.output_text

    again = Response.model_validate_json(http.get(f"/responses/{response.id}").content)
    assert again.id == response.id and again.output_text == response.output_text
    items = ResponseItemList.model_validate_json(
        http.get(f"/responses/{response.id}/input_items").content
    )
    assert items.object == "list" and items.data

    deleted = http.delete(f"/responses/{response.id}")
    assert deleted.status_code == 200
    assert orjson.loads(deleted.content) == {
        "id": response.id,
        "object": "response",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)


def test_every_responses_stream_event_is_a_typed_event(http: httpx.Client) -> None:
    body = {"model": "mock-reasoning", "input": "hi", "stream": True}
    with http.stream("POST", "/responses", json=body) as answer:
        assert answer.status_code == 200
        data = sse_data(answer.iter_lines())
    events = [_STREAM_EVENT.validate_json(item) for item in data]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "[DONE]" not in data


def test_models_are_typed_models(http: httpx.Client) -> None:
    listing = orjson.loads(http.get("/models").content)
    assert listing["object"] == "list"
    for item in listing["data"]:
        assert set(item) >= _MODEL_FIELDS
        Model.model_validate(item)
    Model.model_validate_json(http.get("/models/mock-chat").content)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_are_typed(http: httpx.Client, encoding: str) -> None:
    body = {"model": "mock-embed", "input": ["a", "b"], "encoding_format": encoding}
    answer = http.post("/embeddings", json=body)
    if encoding == "float":
        parsed = CreateEmbeddingResponse.model_validate_json(answer.content)
        assert [item.index for item in parsed.data] == [0, 1]
    else:  # the SDK decodes base64 itself; the wire carries strings
        data = orjson.loads(answer.content)["data"]
        assert all(isinstance(item["embedding"], str) for item in data)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/chat/completions", {"model": "mock-chat"}, 400),
        ("POST", "/chat/completions", {"model": "no-such", "messages": _user("x")}, 404),
        ("GET", "/models/no-such", None, 404),
        ("GET", "/responses/resp_nope", None, 404),
        ("POST", "/embeddings", {"model": "mock-embed"}, 400),
        ("GET", "/no-such-route", None, 404),
        ("DELETE", "/chat/completions", None, 405),
    ],
)
def test_every_error_is_a_typed_error_object(
    http: httpx.Client, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    answer = http.request(method, path, json=body)
    assert answer.status_code == status
    error = orjson.loads(answer.content)["error"]
    assert set(error) == _ERROR_FIELDS
    parsed = ErrorObject.model_validate(error)
    assert parsed.message and parsed.type


def test_authentication_errors_are_typed(base_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-sy-wrong"}):
        answer = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10)
        assert answer.status_code == 401
        error = orjson.loads(answer.content)["error"]
        assert set(error) == _ERROR_FIELDS
        ErrorObject.model_validate(error)


def test_node_sdk_reads_every_shape(base_url: str, api_key: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK test needs Node.js >= 20")
    if not (_NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.skip("the Node SDK is not installed: run `make node-deps` (npm ci)")
    env = {**os.environ, "SWITCHYARD_BASE_URL": f"{base_url}/v1", "SWITCHYARD_API_KEY": api_key}
    run = subprocess.run(
        [node, "shapes.mjs"], cwd=_NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    assert result["plain"]["text"] and result["plain"]["chunks"] > 2
    assert json.loads(result["tools"]["toolArgs"])  # the argument deltas join into JSON
    assert result["helper"]["finish"] == "tool_calls"
    assert result["helper"]["tool"] == "get_weather"
    assert result["helper"]["usage"]["total_tokens"] > 0
    responses = result["responses"]
    assert responses["text"] and responses["streamed"] == responses["text"]
    assert (responses["status"], responses["first"], responses["last"]) == (
        "completed",
        "response.created",
        "response.completed",
    )
    assert responses["retrieved"] is True
    assert result["embeddings"]["count"] == 2
    assert result["model"] == {"id": "mock-chat", "object": "model"}
    errors = result["errors"]
    assert errors["badRequest"] == {
        "status": 400,
        "type": "invalid_request_error",
        "code": "missing_required_parameter",
        "param": "messages",
    }
    assert (errors["notFound"]["status"], errors["notFound"]["code"]) == (404, "model_not_found")
    assert (errors["auth"]["status"], errors["auth"]["type"]) == (401, "authentication_error")
