"""A real OpenAI SDK request travels edge -> router -> fake provider and back, unchanged.

The fake provider is deterministic, so the gateway's answer is compared byte for
byte with the provider's own answer to the same request sent to it directly.
"""

from __future__ import annotations

import uuid

import httpx
import openai
import orjson
import pytest

from tests.integration.helpers import expected_reply, prompt_words, sse_data

pytestmark = pytest.mark.integration


def _messages() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer briefly and to the point."},
        {"role": "user", "content": f"Explain what Kubernetes is ({uuid.uuid4().hex[:8]})"},
    ]


def test_chat_completion_reaches_the_provider_and_comes_back_unchanged(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    messages = _messages()
    body = {"model": "mock-chat", "messages": messages}

    reply = openai_client.chat.completions.with_raw_response.create(**body)  # type: ignore[call-overload]
    completion = reply.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == expected_reply(body)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_words(messages)
    direct = httpx.post(f"{fake_provider_url}/v1/chat/completions", json=body, timeout=10)
    through_gateway = orjson.loads(reply.content)
    # The gateway adds only its priced line items (seed 002); the rest is the provider's.
    context = through_gateway.pop("generation_context")
    assert [item["sku"] for item in context["generated_usage"]] == [
        "inference.chat_completions.in",
        "inference.chat_completions.out",
    ]
    assert through_gateway == direct.json()
    assert reply.headers["x-switchyard-provider"] == "fake"
    assert reply.headers["x-switchyard-attempts"] == "1"
    assert reply.headers["x-request-id"]


def test_streamed_chat_is_the_providers_chunks_then_done(
    openai_client: openai.OpenAI, base_url: str, api_key: str, fake_provider_url: str
) -> None:
    messages = _messages()
    body = {"model": "mock-chat", "messages": messages, "stream": True}

    chunks = list(openai_client.chat.completions.create(**body))  # type: ignore[call-overload]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply(body)
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"

    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=10
    ) as gw:
        assert gw.status_code == 200
        assert gw.headers["content-type"].startswith("text/event-stream")
        through_gateway = sse_data(gw.iter_lines())
    with httpx.stream(
        "POST", f"{fake_provider_url}/v1/chat/completions", json=body, timeout=10
    ) as direct:
        from_provider = sse_data(direct.iter_lines())
    assert through_gateway[-1] == "[DONE]"
    chunks_through = [orjson.loads(c) for c in through_gateway[:-1]]
    # The gateway's one addition: its priced line items, on the last (finishing) chunk.
    assert "generated_usage" in chunks_through[-1].pop("generation_context")
    assert chunks_through == [orjson.loads(c) for c in from_provider[:-1]]


def test_include_usage_gives_the_final_usage_chunk(openai_client: openai.OpenAI) -> None:
    messages = _messages()
    chunks = list(
        openai_client.chat.completions.create(
            model="mock-chat",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == prompt_words(messages)
    assert all(c.usage is None for c in chunks[:-1])


async def test_async_client_chat_and_stream(base_url: str, api_key: str) -> None:
    messages = _messages()
    body = {"model": "mock-chat", "messages": messages}
    async with openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30
    ) as client:
        completion = await client.chat.completions.create(**body)  # type: ignore[call-overload]
        assert completion.choices[0].message.content == expected_reply(body)
        stream = await client.chat.completions.create(**body, stream=True)  # type: ignore[call-overload]
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == expected_reply({**body, "stream": True})


def test_the_provider_saw_exactly_what_the_client_sent(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    messages = _messages()
    openai_client.chat.completions.create(
        model="mock-chat",
        messages=messages,  # type: ignore[arg-type]
        temperature=0.25,
        seed=7,
        extra_body={"a_field_we_do_not_know": {"nested": [1, 2]}},
    )
    seen = httpx.get(f"{fake_provider_url}/_fake/requests", timeout=10).json()["requests"]
    (request,) = [r for r in seen if r["body"] and r["body"].get("messages") == messages]
    assert request["body"]["temperature"] == 0.25
    assert request["body"]["seed"] == 7
    assert request["body"]["a_field_we_do_not_know"] == {"nested": [1, 2]}
    assert request["body"]["model"] == "mock-chat"
