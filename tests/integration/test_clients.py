"""Real clients against the running stack: the OpenAI Python SDK (sync and async), the
OpenAI Node SDK (``tests/integration/node``, installed by ``make node-deps``) and
LangChain's ChatOpenAI. Each does what a user of seed 000 does, unmodified, with
only the base URL and key pointing at the gateway.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.integration.helpers import expected_reply, prompt_words

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).with_name("node")
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
]


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"tell me about gateways {uuid.uuid4().hex[:8]}"}]


def _expected(messages: list[dict[str, str]], **extra: Any) -> str:
    return expected_reply({"model": "mock-chat", "messages": messages, **extra})


# -- the OpenAI Python SDK ---------------------------------------------------------------------


def test_python_sdk_sync(openai_client: openai.OpenAI) -> None:
    messages = _messages()
    completion = openai_client.chat.completions.create(model="mock-chat", messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == _expected(messages)

    stream = openai_client.chat.completions.create(
        model="mock-chat",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == _expected(
        messages
    )

    called = openai_client.chat.completions.create(
        model="mock-chat",
        messages=messages,  # type: ignore[arg-type]
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    )
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"text": messages[0]["content"]}  # type: ignore[union-attr]

    assert {"mock-chat", "mock-embed"} <= {m.id for m in openai_client.models.list()}
    vectors = openai_client.embeddings.create(model="mock-embed", input=["a b", "c"])
    assert [len(d.embedding) for d in vectors.data] == [8, 8]
    assert vectors.usage.prompt_tokens == 3


async def test_python_sdk_async(base_url: str, api_key: str) -> None:
    messages = _messages()
    async with openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30
    ) as client:
        completion = await client.chat.completions.create(model="mock-chat", messages=messages)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == _expected(messages)

        stream = await client.chat.completions.create(
            model="mock-chat",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            tools=TOOLS,
            tool_choice="required",
        )
        arguments = ""
        async for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or ():
                    arguments += (delta.function.arguments or "") if delta.function else ""
        assert orjson.loads(arguments) == {"text": messages[0]["content"]}

        assert "mock-reasoning" in {m.id async for m in client.models.list()}
        vectors = await client.embeddings.create(model="mock-embed", input="one two three")
        assert vectors.usage.prompt_tokens == 3


def test_python_sdk_error_mapping(base_url: str, api_key: str) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with (
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sy-wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.chat.completions.create(model="mock-chat", messages=messages)
    with (
        openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0) as client,
        pytest.raises(openai.NotFoundError),
    ):
        client.chat.completions.create(model="no-such-model", messages=messages)


def test_python_sdk_sees_a_provider_429_as_rate_limit_error(base_url: str, api_key: str) -> None:
    """The only deployment of mock-rate-limited answers 429: the caller is rate limited.

    OpenAI clients back off and retry on 429; a 502 would tell them the gateway broke.
    """
    messages: Any = [{"role": "user", "content": "hi"}]
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="mock-rate-limited", messages=messages)
        assert info.value.status_code == 429
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="mock-rate-limited", messages=messages, stream=True
            )


# -- the OpenAI Node SDK -----------------------------------------------------------------------


def test_node_sdk_chat_stream_and_models(base_url: str, api_key: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK client test needs Node.js >= 20")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.skip("the Node SDK is not installed: run `make node-deps` (npm ci)")
    messages = _messages()
    env = {
        **os.environ,
        "SWITCHYARD_BASE_URL": f"{base_url}/v1",
        "SWITCHYARD_API_KEY": api_key,
        "SWITCHYARD_PROMPT": messages[0]["content"],
    }
    run = subprocess.run(
        [node, "client.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    assert result["completion"]["object"] == "chat.completion"
    assert result["completion"]["content"] == _expected(messages)
    assert result["completion"]["usage"]["prompt_tokens"] == prompt_words(messages)
    assert result["stream"]["content"] == _expected(messages)
    assert result["stream"]["usage"]["prompt_tokens"] == prompt_words(messages)
    assert result["stream"]["chunks"] > 3
    assert {"mock-chat", "mock-reasoning", "mock-embed"} <= set(result["models"])
    assert result["unknownModel"] == {"status": 404, "code": "model_not_found"}


# -- LangChain ---------------------------------------------------------------------------------


def test_langchain_chat_openai_invoke_and_stream(base_url: str, api_key: str) -> None:
    chat_models = pytest.importorskip("langchain_openai")
    llm = chat_models.ChatOpenAI(
        model="mock-chat", base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30
    )
    text = f"what is a gateway {uuid.uuid4().hex[:8]}"

    answer = llm.invoke(text)
    # The reply quotes the user text, then the digest of the body LangChain sent.
    assert answer.content.startswith(f"{text} [")
    assert answer.usage_metadata["input_tokens"] == len(text.split())

    pieces = [chunk.content for chunk in llm.stream(text)]
    assert len(pieces) > 3
    assert "".join(pieces).startswith(f"{text} [")
