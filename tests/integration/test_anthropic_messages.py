"""Anthropic's Messages API at the edge, driven by the official ``anthropic`` SDK.

``mock-chat`` is an OpenAI-kind model: a Messages request reaches the fake
provider as the OpenAI chat request ``edge.anthropic.inbound`` builds, so each
test can compute the fake's deterministic reply from the chat body it expects
the provider to have received, and check what did reach it (``/_fake/requests``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.catalog import load_catalog
from gateway_common.db import sync_url
from tests.integration.helpers import fake_requests, poll, provider_digest

pytestmark = pytest.mark.integration

_WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
_OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": _WEATHER["input_schema"],
        "description": "Weather in a city",
    },
}


def _marker() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def client(base_url: str, api_key: str) -> Iterator[anthropic.Anthropic]:
    """The official Anthropic SDK pointed at the gateway (it sends ``x-api-key``)."""
    sdk = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    try:
        yield sdk
    finally:
        sdk.close()


@pytest.fixture
async def aclient(base_url: str, api_key: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    try:
        yield sdk
    finally:
        await sdk.close()


def _reply(chat: dict[str, Any], last_user: str) -> str:
    return f"{last_user} [{provider_digest(chat)}]"


def test_create_is_a_message_translated_from_the_chat_answer(
    client: anthropic.Anthropic, fake_provider_url: str
) -> None:
    text = f"Explain Kubernetes {_marker()}"
    raw = client.messages.with_raw_response.create(
        model="mock-chat",
        max_tokens=100,
        system="Answer briefly.",
        messages=[{"role": "user", "content": text}],
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},  # this SDK no longer names it; the API takes it
        metadata={"user_id": "user-7"},
    )
    message = raw.parse()
    chat = {
        "model": "mock-chat",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": text},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "user-7",
    }
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "mock-chat"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == _reply(chat, text)  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 2 + len(text.split())  # the fake counts words
    assert message.usage.output_tokens == len(_reply(chat, text).split())
    assert raw.headers["x-switchyard-provider"] == "fake"
    assert raw.headers["x-switchyard-attempts"] == "1"
    # generation_context stays off on this surface: the Message has only Anthropic's keys.
    assert set(orjson.loads(raw.http_response.content)) == {
        "id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage",
    }  # fmt: skip
    (seen,) = fake_requests(fake_provider_url, text)
    assert seen["body"] == chat


def test_stream_helpers_give_the_text_and_the_final_message(client: anthropic.Anthropic) -> None:
    text = f"Stream me {_marker()}"
    with client.messages.stream(
        model="mock-chat", max_tokens=50, messages=[{"role": "user", "content": text}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    chat = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": text}],
        "max_completion_tokens": 50,
    }
    assert streamed == _reply(chat, text)
    assert final.content[0].text == streamed  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == len(text.split())
    assert final.usage.output_tokens == len(streamed.split())


def test_stream_is_anthropics_event_sequence_never_openai_chunks(
    base_url: str, api_key: str
) -> None:
    body = {
        "model": "mock-chat",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": f"two words {_marker()}"}],
    }
    headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", f"{base_url}/v1/messages", json=body, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert len(events) == len(data)
    assert [d["type"] for d in data] == events
    assert events[:3] == ["message_start", "ping", "content_block_start"]
    assert set(events[3:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert data[-2]["delta"]["stop_reason"] == "end_turn"
    assert data[-2]["usage"]["output_tokens"] > 0
    assert all(d["delta"]["type"] == "text_delta" for d in data[3:-3])


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_tool_use_round_trip(
    client: anthropic.Anthropic, fake_provider_url: str, stream: bool
) -> None:
    city = f"Paris {_marker()}"
    ask: list[Any] = [{"role": "user", "content": city}]
    tool_choice: Any = {"type": "tool", "name": "get_weather"}
    if stream:
        with client.messages.stream(
            model="mock-chat",
            max_tokens=50,
            messages=ask,
            tools=[_WEATHER],
            tool_choice=tool_choice,
        ) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(
            model="mock-chat",
            max_tokens=50,
            messages=ask,
            tools=[_WEATHER],
            tool_choice=tool_choice,
        )
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.name == "get_weather"
    assert use.input == {"text": city}  # the fake's arguments, parsed from its JSON string
    assert use.id.startswith("call_")

    answer = client.messages.create(
        model="mock-chat",
        max_tokens=50,
        tools=[_WEATHER],
        messages=[
            *ask,
            {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"},
                    {"type": "text", "text": f"thanks {city}"},
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    seen = fake_requests(fake_provider_url, f"thanks {city}")[-1]["body"]
    assert seen["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": use.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": orjson.dumps(use.input).decode()},
            }
        ],
    }
    assert seen["messages"][2] == {"role": "tool", "tool_call_id": use.id, "content": "Sunny, 21 C"}
    assert seen["messages"][3] == {
        "role": "user",
        "content": [{"type": "text", "text": f"thanks {city}"}],
    }
    assert seen["tools"] == [_OPENAI_WEATHER]


def test_parallel_tool_calls_stream_as_consecutive_blocks(
    client: anthropic.Anthropic,
) -> None:
    second = {**_WEATHER, "name": "get_time"}
    with client.messages.stream(
        model="mock-chat",
        max_tokens=50,
        messages=[{"role": "user", "content": f"both {_marker()}"}],
        tools=[_WEATHER, second],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert [(b.type, b.name) for b in final.content] == [  # type: ignore[union-attr]
        ("tool_use", "get_weather"),
        ("tool_use", "get_time"),
    ]
    assert final.content[0].input == final.content[1].input  # type: ignore[union-attr]


def test_images_and_documents_become_chat_content_parts(
    client: anthropic.Anthropic, fake_provider_url: str
) -> None:
    marker = _marker()
    client.messages.create(
        model="mock-chat",
        max_tokens=20,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        "title": "Notes",
                    },
                    {
                        "type": "text",
                        "text": f"describe {marker}",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ],
        extra_body={"top_k": 5},
    )
    (seen,) = fake_requests(fake_provider_url, marker)
    assert seen["body"]["messages"] == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "text", "text": "Notes"},
                {"type": "text", "text": "notes"},
                {"type": "text", "text": f"describe {marker}"},  # no cache_control to OpenAI
            ],
        },
    ]
    assert "top_k" not in seen["body"]  # Anthropic-only sampling is not sent to OpenAI kinds


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(
        model="mock-chat", messages=[{"role": "user", "content": "hi"}]
    )
    longer = client.messages.count_tokens(
        model="mock-chat",
        system="You are a careful assistant who answers in full sentences.",
        messages=[{"role": "user", "content": "hi " * 200}],
        tools=[_WEATHER],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_models_list_in_anthropics_shape(
    client: anthropic.Anthropic, base_url: str, api_key: str
) -> None:
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert "mock-chat" in ids
    assert all(model.type == "model" for model in page.data)
    assert client.models.retrieve("mock-chat").id == "mock-chat"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")
    # Without anthropic-version, /v1/models is OpenAI's list, as before.
    plain = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
    assert plain.json()["object"] == "list"


# -- errors ----------------------------------------------------------------------------


def _anthropic_error(answer: httpx.Response, status: int, kind: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


def test_sdk_error_mapping(base_url: str, client: anthropic.Anthropic) -> None:
    ask: list[Any] = [{"role": "user", "content": "hi"}]
    wrong = anthropic.Anthropic(base_url=base_url, api_key="sk-sy-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        wrong.messages.create(model="mock-chat", max_tokens=5, messages=ask)
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=5, messages=ask)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="mock-rate-limited", max_tokens=5, messages=ask)


async def test_async_client_create_and_stream(aclient: anthropic.AsyncAnthropic) -> None:
    text = f"async {_marker()}"
    ask: list[Any] = [{"role": "user", "content": text}]
    message = await aclient.messages.create(model="mock-chat", max_tokens=20, messages=ask)
    async with aclient.messages.stream(model="mock-chat", max_tokens=20, messages=ask) as stream:
        final = await stream.get_final_message()
    assert message.content[0].text == final.content[0].text  # type: ignore[union-attr]
    with pytest.raises(anthropic.NotFoundError):
        await aclient.messages.create(model="no-such-model", max_tokens=5, messages=ask)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": "mock-chat", "max_tokens": 5, "messages": []}, "messages"),
        (
            {
                "model": "mock-chat",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}],
            },
            "messages[0].content",
        ),
        (
            {
                "model": "mock-chat",
                "max_tokens": 5,
                "temperature": 1.5,
                "messages": [{"role": "user", "content": "hi"}],
            },
            "temperature",
        ),
        (
            {
                "model": "mock-chat",
                "max_tokens": 5,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                "messages": [{"role": "user", "content": "hi"}],
            },
            "web_search_20250305",
        ),
    ],
    ids=["no-max-tokens", "no-messages", "unknown-block", "temperature", "server-tool"],
)
def test_bad_requests_are_400_invalid_request_error(
    base_url: str, api_key: str, body: dict[str, Any], fragment: str
) -> None:
    answer = httpx.post(
        f"{base_url}/v1/messages", json=body, headers={"x-api-key": api_key}, timeout=10
    )
    assert fragment in _anthropic_error(answer, 400, "invalid_request_error")


def test_auth_errors_take_anthropics_shape(base_url: str, api_key: str) -> None:
    body = {"model": "mock-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{base_url}/v1/messages"
    _anthropic_error(httpx.post(url, json=body, timeout=10), 401, "authentication_error")
    bad = httpx.post(url, json=body, headers={"x-api-key": "sk-sy-nope"}, timeout=10)
    _anthropic_error(bad, 401, "authentication_error")
    bearer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert bearer.status_code == 200, bearer.text
    big = httpx.post(
        url, content=b"x" * (5 * 1024 * 1024), headers={"x-api-key": api_key}, timeout=30
    )
    _anthropic_error(big, 413, "request_too_large")


def test_every_attempt_shed_is_529_overloaded_error_and_503_on_openai_paths(
    base_url: str, api_key: str, client: anthropic.Anthropic, openai_client: Any
) -> None:
    """Both deployments of ``mock-overloaded`` answer 529 (one Anthropic-kind, one OpenAI-kind):
    Anthropic clients see Anthropic's overload and retry it; OpenAI clients keep a 503."""
    ask: list[Any] = [{"role": "user", "content": f"shed {_marker()}"}]
    with pytest.raises(anthropic.OverloadedError) as shed:
        client.messages.create(model="mock-overloaded", max_tokens=5, messages=ask)
    assert shed.value.status_code == 529
    assert shed.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert shed.value.response.headers["x-should-retry"] == "true"
    with (
        pytest.raises(anthropic.OverloadedError),
        client.messages.stream(model="mock-overloaded", max_tokens=5, messages=ask) as stream,
    ):
        stream.get_final_message()
    answer = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "mock-overloaded", "messages": ask},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "provider_overloaded"
    assert {a["status"] for a in error["attempts"]} == {503}
    assert {a["provider"] for a in error["attempts"]} == {
        "fake-overloaded",
        "fake-overloaded-openai",
    }


# -- an Anthropic-kind model: least translation ------------------------------------------

CLAUDE = "mock-claude"  # on the fake's Messages mode (tests/integration/catalog.yaml)


def _ledger_items(stack: Stack, request_id: str) -> dict[str, Any] | None:
    """Billing's line items of ``request_id`` by SKU, or None while not yet written."""
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            entry = conn.execute(
                sa.text("SELECT id FROM ledger_entries WHERE request_id = :r"), {"r": request_id}
            ).one_or_none()
            if entry is None:
                return None
            rows = conn.execute(
                sa.text("SELECT * FROM ledger_line_items WHERE entry_id = :e"), {"e": entry.id}
            ).all()
            return {row.sku: row for row in rows}
    finally:
        engine.dispose()


def test_cache_control_reaches_anthropic_and_cache_tokens_are_billed_at_their_rates(
    client: anthropic.Anthropic, stack: Stack, fake_provider_url: str
) -> None:
    marker = _marker()
    system: Any = [
        {"type": "text", "text": f"You know these six long facts {marker}"},
        {"type": "text", "text": "and two more", "cache_control": {"type": "ephemeral"}},
    ]
    ask: list[Any] = [{"role": "user", "content": "hello there"}]
    first = client.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=50,
        system=system,
        messages=ask,
        extra_body={"top_k": 3},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07, fake-beta-1"},
    )
    second = client.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=50,
        system=system,
        messages=ask,
        extra_body={"top_k": 3},
        extra_headers={"anthropic-version": "2099-01-01"},  # not one the router supports
    )
    cached_words = len(f"You know these six long facts {marker}".split()) + 3
    one, two = first.parse(), second.parse()
    assert one.usage.cache_creation_input_tokens == cached_words
    assert one.usage.cache_read_input_tokens == 0
    assert two.usage.cache_creation_input_tokens == 0
    assert two.usage.cache_read_input_tokens == cached_words
    assert one.usage.input_tokens == two.usage.input_tokens == 2  # "hello there"
    assert first.headers["x-switchyard-provider"] == "fake-anthropic"

    seen = fake_requests(fake_provider_url, marker)
    assert [r["path"] for r in seen] == ["/v1/messages", "/v1/messages"]
    sent = seen[0]["body"]
    assert sent["system"] == system  # the blocks and their breakpoint, unchanged
    assert sent["top_k"] == 3
    assert sent["model"] == "claude-fake-1"
    assert seen[0]["headers"]["anthropic-beta"] == "context-1m-2025-08-07,fake-beta-1"
    # The SDK's (supported) version is sent on; an unsupported one becomes the router's.
    assert seen[0]["headers"]["anthropic-version"] == "2023-06-01"
    assert seen[1]["headers"]["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in seen[1]["headers"]

    prices = load_catalog(stack.catalog_path).models[CLAUDE].prices
    written = poll(lambda: _ledger_items(stack, first.headers["x-request-id"]))
    read = poll(lambda: _ledger_items(stack, second.headers["x-request-id"]))
    write_sku, read_sku = (
        "inference.chat_completions.in.cache_write",
        "inference.chat_completions.in.cached",
    )
    assert written[write_sku].quantity == cached_words
    assert Decimal(written[write_sku].unit_price) == prices.cache_write
    assert read_sku not in written
    assert read[read_sku].quantity == cached_words
    assert Decimal(read[read_sku].unit_price) == prices.cached_input
    assert write_sku not in read
    assert written["inference.chat_completions.in"].quantity == 2


def test_thinking_streams_with_its_signature_on_an_anthropic_model(
    client: anthropic.Anthropic, fake_provider_url: str
) -> None:
    text = f"ponder {_marker()}"
    with client.messages.stream(
        model=CLAUDE,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": text}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.thinking == f"Thinking about: {text}"  # type: ignore[union-attr]
    assert thinking.signature.startswith("sig_")  # type: ignore[union-attr]
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    (seen,) = fake_requests(fake_provider_url, text)
    assert seen["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}

    # The next turn sends the thinking back, signature and all, as Anthropic requires.
    client.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": text},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": f"again {text}"},
        ],
    )
    again = fake_requests(fake_provider_url, f"again {text}")[-1]["body"]
    assert again["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": thinking.thinking,  # type: ignore[union-attr]
        "signature": thinking.signature,  # type: ignore[union-attr]
    }


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_stop_sequence_is_named_on_an_anthropic_model(
    client: anthropic.Anthropic, stream: bool
) -> None:
    ask: list[Any] = [{"role": "user", "content": f"stop here [then not {_marker()}"}]
    if stream:
        with client.messages.stream(
            model=CLAUDE, max_tokens=50, messages=ask, stop_sequences=["["]
        ) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(
            model=CLAUDE, max_tokens=50, messages=ask, stop_sequences=["["]
        )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "["
    assert message.content[0].text == "stop here "  # type: ignore[union-attr]


def test_tool_use_streams_input_json_on_an_anthropic_model(client: anthropic.Anthropic) -> None:
    city = f"Oslo {_marker()}"
    with client.messages.stream(
        model=CLAUDE,
        max_tokens=50,
        messages=[{"role": "user", "content": city}],
        tools=[_WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = stream.get_final_message()
    (use,) = final.content
    assert use.type == "tool_use" and use.input == {"text": city}
    assert use.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"


def _raw_stream(base_url: str, api_key: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST",
        f"{base_url}/v1/messages",
        json={**body, "stream": True},
        headers=headers,
        timeout=30,
    ) as answer:
        assert answer.status_code == 200, answer.read()
        lines = [line for line in answer.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [d["type"] for d in data] == events, "every event is named as its data's type"
    return list(zip(events, data, strict=True))


@pytest.mark.parametrize(
    ("model", "text", "kind"),
    [
        # The provider's own overloaded_error event keeps its kind; a dropped connection
        # is a provider failure (api_error).
        (CLAUDE, "fail [stream-error]", "overloaded_error"),
        ("fo-break", "a break mid-stream", "api_error"),
    ],
    ids=["anthropic-error-event", "openai-connection-drop"],
)
def test_a_mid_stream_failure_ends_with_an_error_event(
    base_url: str, api_key: str, model: str, text: str, kind: str
) -> None:
    body = {
        "model": model,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"{text} one two three four {_marker()}"}],
    }
    events = _raw_stream(base_url, api_key, body)
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["message_start", "ping"]
    assert "content_block_delta" in kinds
    assert kinds[-1] == "error" and "message_stop" not in kinds
    error = events[-1][1]
    assert error["error"]["type"] == kind and error["error"]["message"]


def test_the_sdk_raises_on_a_mid_stream_error(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model=CLAUDE,
            max_tokens=50,
            messages=[{"role": "user", "content": f"fail [stream-error] {_marker()}"}],
        ) as stream,
    ):
        for _ in stream:
            pass


# -- the Node SDK ----------------------------------------------------------------------

_NODE_DIR = Path(__file__).with_name("node")


@pytest.mark.parametrize("model", ["mock-chat", CLAUDE])
def test_node_sdk(base_url: str, api_key: str, model: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK test needs Node.js >= 20")
    if not (_NODE_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        pytest.skip("the Anthropic Node SDK is not installed: run `make node-deps` (npm ci)")
    prompt = f"Weather in Rome {_marker()}"
    env = {
        **os.environ,
        "SWITCHYARD_ORIGIN": base_url,
        "SWITCHYARD_API_KEY": api_key,
        "SWITCHYARD_MODEL": model,
        "SWITCHYARD_PROMPT": prompt,
    }
    run = subprocess.run(
        [node, "anthropic.mjs"], cwd=_NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["created"]["id"].startswith("msg_")
    assert result["created"]["text"].startswith(prompt + " [")
    assert result["created"]["stop"] == "end_turn"
    assert result["stream"]["text"] == result["stream"]["final"] == result["created"]["text"]
    assert result["stream"]["usage"]["output_tokens"] > 0
    assert result["tool"] == {"name": "get_weather", "input": {"text": prompt}, "stop": "tool_use"}
    assert result["answered"] == "end_turn"
    assert result["countTokens"] > 0
    assert result["unknownModel"] == {
        "status": 404,
        "name": "NotFoundError",
        "type": "not_found_error",
    }
    assert result["wrongKey"] == {
        "status": 401,
        "name": "AuthenticationError",
        "type": "authentication_error",
    }
