"""The fake provider's context windows: its estimate, and the 400 OpenAI answers past them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fakeprovider import FakeProviderApp, windows

pytestmark = pytest.mark.timeout(10)


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=FakeProviderApp(history=5))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


def test_the_table() -> None:
    assert dict(windows.WINDOWS) == {
        "mock-chat": 128_000,
        "mock-reasoning": 200_000,
        "mock-small-window": 1_000,
    }
    assert windows.window_of("anything-else") == windows.window_of(None) == 128_000


def test_the_estimate() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x" * 401},  # 3 + 1 + 101
            {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "fn", "arguments": '{"a": 1}'}}],
            },
        ]
    }
    # priming 3; message 1: 3 + 1 ("user") + 101; message 2: 3 + 1 + 1; message 3: 3 + 3 + 1 + 2
    assert windows.prompt_tokens(body) == 3 + 105 + 5 + 9


@pytest.mark.parametrize("stream", [False, True])
async def test_past_the_window_is_openais_400(client: httpx.AsyncClient, stream: bool) -> None:
    body = chat("mock-small-window", "x" * 4000, stream=stream)  # 3 + 3 + 1 + 1000 tokens
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "This model's maximum context length is 1000 tokens. However, your "
            "messages resulted in 1007 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    recorded = (await client.get("/_fake/requests")).json()["requests"]
    assert len(recorded) == 1  # it reached the provider, as a real one would see it


async def test_the_completion_cap_counts(client: httpx.AsyncClient) -> None:
    fits = chat("mock-small-window", "x" * 3900, max_tokens=18)  # 982 + 18 = 1000
    assert (await client.post("/v1/chat/completions", json=fits)).status_code == 200
    over = chat("mock-small-window", "x" * 3900, max_completion_tokens=19)
    response = await client.post("/v1/chat/completions", json=over)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "This model's maximum context length is 1000 tokens. However, you requested 1001 "
        "tokens (982 in the messages, 19 in the completion). Please reduce the length of the "
        "messages or completion."
    )


async def test_the_big_windows_hold(client: httpx.AsyncClient) -> None:
    text = "x" * 600_000  # 150k tokens: over mock-chat's window, within mock-reasoning's
    refused = await client.post("/v1/chat/completions", json=chat("mock-chat", text))
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    answered = await client.post("/v1/chat/completions", json=chat("mock-reasoning", text))
    assert answered.status_code == 200
