"""The OpenAI-compatible surface end to end: chat fields, tool calls, embeddings, models, routing.

Every request carries a unique marker so the fake provider's request log
(``/_fake/requests``) shows exactly what reached it. Expected answers are
computed from the fake's documented behaviour, or fetched from the fake
directly with the same body, never from the code under test.
"""

from __future__ import annotations

import base64
import struct
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from devtools.stack import Stack
from gateway_common.catalog import load_catalog
from gateway_common.db import sync_url
from tests.integration.helpers import (
    fake_requests,
    ledger_entry,
    poll,
    sse_data,
    without_generation_context,
    without_stream_generation_context,
)

pytestmark = pytest.mark.integration

CATALOG = load_catalog(Path(__file__).with_name("catalog.yaml"))
CHAT = "/v1/chat/completions"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


def _marker() -> str:
    return uuid.uuid4().hex[:12]


def _post(base_url: str, api_key: str, body: dict[str, Any], path: str = CHAT) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"}
    return httpx.post(f"{base_url}{path}", json=body, headers=headers, timeout=20)


def _every_field(marker: str) -> dict[str, Any]:
    """A chat request using every documented parameter, every role and part kind."""
    return {
        "model": "mock-chat",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "prefer tools"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"what is in this picture {marker}"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_prev",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_prev", "content": "sunny"},
            {"role": "user", "content": f"and now? {marker}"},
        ],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True},
        },
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["END"],
        "n": 2,
        "seed": 11,
        "max_tokens": 64,
        "max_completion_tokens": 128,
        "logprobs": True,
        "top_logprobs": 2,
        "user": "end-user-7",
        "metadata": {"ticket": marker},
        "a_field_openai_adds_next_year": {"deep": [1, {"x": None}]},
    }


# -- chat ------------------------------------------------------------------------------------


def test_every_chat_field_reaches_the_provider_unchanged(
    base_url: str, api_key: str, fake_provider_url: str
) -> None:
    marker = _marker()
    body = _every_field(marker)
    resp = _post(base_url, api_key, body)
    assert resp.status_code == 200, resp.text

    (seen,) = fake_requests(fake_provider_url, marker)
    assert seen["body"] == body
    direct = httpx.post(f"{fake_provider_url}{CHAT}", json=body, timeout=10)
    assert without_generation_context(resp.json()) == direct.json()
    choices = resp.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert {c["message"]["tool_calls"][0]["function"]["name"] for c in choices} == {"get_weather"}


def test_tool_calls_come_back_in_openai_shape(openai_client: openai.OpenAI) -> None:
    text = f"weather in Paris {_marker()}"
    completion = openai_client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": text}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert all(orjson.loads(c.function.arguments) == {"text": text} for c in calls)  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2


def test_streamed_tool_calls_keep_ids_names_and_argument_deltas(
    openai_client: openai.OpenAI, base_url: str, api_key: str, fake_provider_url: str
) -> None:
    text = f"time and weather in Lima {_marker()}"
    body = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": text}],
        "tools": TOOLS,
        "tool_choice": "required",
        "n": 2,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("POST", f"{base_url}{CHAT}", json=body, headers=headers, timeout=20) as gw:
        through_gateway = sse_data(gw.iter_lines())
    with httpx.stream("POST", f"{fake_provider_url}{CHAT}", json=body, timeout=20) as direct:
        from_provider = sse_data(direct.iter_lines())
    # every delta, in order, byte for byte
    assert without_stream_generation_context(through_gateway) == from_provider

    calls: dict[tuple[int, int], dict[str, str]] = {}
    for chunk in openai_client.chat.completions.create(**body):  # type: ignore[call-overload]
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault((choice.index, delta.index), {"id": "", "args": ""})
                call["id"] += delta.id or ""
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                call["args"] += (delta.function.arguments or "") if delta.function else ""
    assert sorted(calls) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {calls[k]["name"] for k in calls} == {"get_weather", "get_time"}
    assert all(orjson.loads(c["args"]) == {"text": text} for c in calls.values())
    assert calls[(0, 0)]["id"].startswith("call_") and calls[(0, 0)]["id"] != calls[(0, 1)]["id"]


def test_refusal_comes_back(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": f"[refuse] {_marker()}"}]
    )
    message = completion.choices[0].message
    assert message.content is None
    assert message.refusal is not None and message.refusal.startswith("I can't help with that.")


# -- embeddings ------------------------------------------------------------------------------


def test_embeddings_inputs_encodings_and_dimensions(
    openai_client: openai.OpenAI, base_url: str, api_key: str, fake_provider_url: str
) -> None:
    marker = _marker()
    one = openai_client.embeddings.create(model="mock-embed", input=f"hello {marker}")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    assert one.usage.prompt_tokens == 2

    texts = [f"first {marker}", f"second text {marker}"]
    batch = openai_client.embeddings.create(model="mock-embed", input=texts, dimensions=16)
    assert [d.index for d in batch.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in batch.data)
    assert batch.usage.prompt_tokens == 5

    floats = _post(
        base_url,
        api_key,
        {"model": "mock-embed", "input": texts, "dimensions": 16, "encoding_format": "float"},
        "/v1/embeddings",
    ).json()
    raw = _post(
        base_url,
        api_key,
        {"model": "mock-embed", "input": texts, "dimensions": 16, "encoding_format": "base64"},
        "/v1/embeddings",
    ).json()
    for as_float, as_b64, sdk in zip(floats["data"], raw["data"], batch.data, strict=True):
        decoded = list(struct.unpack("<16f", base64.b64decode(as_b64["embedding"])))
        assert decoded == as_float["embedding"] == sdk.embedding

    seen = fake_requests(fake_provider_url, marker)
    assert [r["body"].get("dimensions") for r in seen] == [None, 16, 16, 16]
    assert [r["body"].get("encoding_format") for r in seen][-2:] == ["float", "base64"]


def test_embeddings_are_billed(stack: Stack, base_url: str, api_key: str) -> None:
    resp = _post(
        base_url,
        api_key,
        {"model": "mock-embed", "input": [f"bill these words {_marker()}", "and these"]},
        "/v1/embeddings",
    )
    assert resp.status_code == 200
    tokens = resp.json()["usage"]["prompt_tokens"]
    db_url = sync_url(stack.database_url("billing"))
    entry, items = poll(lambda: ledger_entry(db_url, resp.headers["x-request-id"]))
    assert entry.operation == "embeddings" and entry.model == "mock-embed"
    assert entry.prompt_tokens == tokens
    (item,) = items
    price = CATALOG.models["mock-embed"].prices.input
    assert (item.sku, item.quantity) == ("inference.embeddings.in", tokens)
    assert Decimal(str(item.amount)) == tokens * price == Decimal(str(entry.total_amount))


# -- models ----------------------------------------------------------------------------------


def test_models_list_and_retrieve_through_the_sdk(openai_client: openai.OpenAI) -> None:
    listed = {m.id: m for m in openai_client.models.list()}
    assert set(listed) == set(CATALOG.models)
    chat = listed["mock-chat"].model_dump()
    entry = CATALOG.models["mock-chat"]
    assert chat["object"] == "model"
    assert chat["provider"] == "fake"
    assert chat["context_window"] == entry.context_window
    assert chat["max_output_tokens"] == entry.max_output_tokens
    assert Decimal(chat["pricing"]["input"]) == entry.prices.input
    assert Decimal(chat["pricing"]["output"]) == entry.prices.output
    assert chat["capabilities"] == list(entry.capabilities)

    assert openai_client.models.retrieve("mock-embed").model_dump()["capabilities"] == [
        "embeddings"
    ]
    assert openai_client.models.retrieve("multi-alias").id == "mock-multi"
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("mock-multi", "fake"),
        ("multi-alias", "fake"),
        ("fake-alt:mock-multi", "fake-alt"),
        ("@fake-alt/mock-multi", "fake-alt"),
        ("fake-alt:multi-alias", "fake-alt"),
        ("fake:mock-chat", "fake"),
        ("@fake/mock-chat", "fake"),
    ],
)
def test_bare_names_aliases_and_provider_prefixes(
    openai_client: openai.OpenAI, fake_provider_url: str, model: str, provider: str
) -> None:
    marker = _marker()
    for stream in (False, True):
        reply = openai_client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": marker}], stream=stream
        )
        assert reply.headers["x-switchyard-provider"] == provider
        reply.parse()
    seen = fake_requests(fake_provider_url, marker)
    assert [r["body"]["model"] for r in seen] == ["mock-chat", "mock-chat"]


@pytest.mark.parametrize(
    "model", ["nope:mock-chat", "@nope/mock-chat", "fake-alt:mock-chat", "mock-unknown", "@fake/"]
)
def test_unknown_model_or_provider_is_404_model_not_found(
    openai_client: openai.OpenAI, model: str
) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


# -- what is not supported, and bad input ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/videos"),
        ("POST", "/v1/batches"),
        ("POST", "/v1/audio/speech"),
        ("POST", "/v1/audio/transcriptions"),
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/assistants"),
        ("POST", "/v1/threads/runs"),
        ("POST", "/v1/moderations"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/vector_stores"),
    ],
)
def test_unsupported_routes_are_404_naming_the_route(
    base_url: str, api_key: str, method: str, path: str
) -> None:
    resp = httpx.request(
        method, f"{base_url}{path}", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    )
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "unknown_url"
    assert f"{method} {path}" in error["message"] and "not supported" in error["message"]


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "mock-chat", "messages": [USER], "temperature": "warm"}, "temperature"),
        ({"model": "mock-chat", "messages": [USER], "n": "2"}, "n"),
        (
            {"model": "mock-chat", "messages": [USER], "tools": [{"function": {"name": "f"}}]},
            "tools[0].type",
        ),
        ({"model": "mock-chat", "messages": [USER], "stream": "true"}, "stream"),
        (
            {"model": "mock-chat", "messages": [{"role": "user", "content": 3}]},
            "messages[0].content",
        ),
        (
            {"model": "mock-chat", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "mock-chat", "messages": []}, "messages"),
        ({"model": "mock-chat", "messages": [USER] * 2049}, "messages"),
        ({"model": "mock-embed", "input": []}, "input"),
        ({"model": "mock-embed", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "mock-embed", "input": "x", "dimensions": 0}, "dimensions"),
    ],
    ids=[
        "temperature-type",
        "n-type",
        "tool-without-type",
        "stream-type",
        "content-type",
        "unknown-role",
        "empty-messages",
        "too-many-messages",
        "empty-input",
        "encoding-format",
        "dimensions",
    ],
)
def test_bad_input_is_400_naming_the_field(
    base_url: str, api_key: str, fake_provider_url: str, body: dict[str, Any], param: str
) -> None:
    path = "/v1/embeddings" if "input" in body else CHAT
    resp = _post(base_url, api_key, body, path)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_body_over_the_limit_is_413(base_url: str, api_key: str) -> None:
    big = (
        b'{"model":"mock-chat","messages":[{"role":"user","content":"' + b"x" * (5 << 20) + b'"}]}'
    )
    resp = httpx.post(
        f"{base_url}{CHAT}",
        content=big,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "invalid_request_error"
