"""The fake provider's HTTP behaviour, in process through httpx.ASGITransport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from fakeprovider import FakeProviderApp, replies

pytestmark = pytest.mark.timeout(10)

CHAT = {"model": "mock-chat", "messages": [{"role": "user", "content": "ping pong"}]}


@pytest.fixture
def app() -> FakeProviderApp:
    return FakeProviderApp(history=5)


@pytest.fixture
async def client(app: FakeProviderApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    return [event.removeprefix("data: ") for event in text.split("\n\n") if event]


async def test_models(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [
        "mock-chat",
        "mock-reasoning",
        "mock-embed",
    ]


async def test_chat_is_deterministic(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/chat/completions", json=CHAT)
    second = await client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200
    assert first.json() == second.json() == replies.chat_completion(CHAT)
    assert first.json()["choices"][0]["message"]["content"] == f"ping pong [{replies.digest(CHAT)}]"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(client: httpx.AsyncClient, include_usage: bool) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": include_usage}}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert [orjson.dumps(c) for c in chunks] == replies.chat_chunks(body)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == replies.chat_completion(CHAT)["choices"][0]["message"]["content"]
    assert ("usage" in chunks[-1]) is include_usage


async def test_embeddings(client: httpx.AsyncClient) -> None:
    body = {"model": "mock-embed", "input": "a b c", "dimensions": 3, "encoding_format": "base64"}
    response = await client.post("/v1/embeddings", json=body)
    assert response.status_code == 200
    assert response.json() == replies.embeddings(body)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/chat/completions", b"{not json", 400),
        ("POST", "/v1/chat/completions", b"[]", 400),
        ("POST", "/v1/chat/completions", b'{"model": "mock-chat"}', 400),
        ("GET", "/v1/chat/completions", b"", 405),
        ("POST", "/v1/embeddings", b'{"input": 3}', 400),
        ("GET", "/v2/nothing", b"", 404),
    ],
)
async def test_bad_requests_get_openai_errors(
    client: httpx.AsyncClient, method: str, path: str, body: bytes, status: int
) -> None:
    response = await client.request(method, path, content=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("via", ["header", "path"])
async def test_status_and_retry_after(client: httpx.AsyncClient, via: str) -> None:
    if via == "header":
        headers = {"x-fake-status": "429", "x-fake-retry-after": "2"}
        response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    else:
        response = await client.post(
            "/fault/status=429,retry_after=2/v1/chat/completions", json=CHAT
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("via", ["header", "path"])
async def test_delay(client: httpx.AsyncClient, via: str) -> None:
    started = time.monotonic()
    if via == "header":
        response = await client.get("/v1/models", headers={"x-fake-delay-ms": "150"})
    else:
        response = await client.get("/fault/delay_ms=150/v1/models")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.15


async def test_header_overrides_path_spec(client: httpx.AsyncClient) -> None:
    response = await client.get("/fault/status=500/v1/models", headers={"x-fake-status": "503"})
    assert response.status_code == 503


@pytest.mark.parametrize("via", ["header", "path"])
async def test_reset_without_a_socket_fails_the_request(
    client: httpx.AsyncClient, via: str
) -> None:
    # Under ASGITransport there is no TCP connection to reset; the error reaches the client.
    with pytest.raises(ConnectionResetError):
        if via == "header":
            await client.get("/v1/models", headers={"x-fake-reset": "1"})
        else:
            await client.get("/fault/reset=1/v1/models")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/fault/status=500,bogus=1/v1/models", {}),
        ("/fault/status=abc/v1/models", {}),
        ("/fault/status=500", {}),
        ("/v1/models", {"x-fake-delay-ms": "-1"}),
    ],
)
async def test_bad_fault_spec(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_fault_spec"


async def test_request_log(client: httpx.AsyncClient) -> None:
    await client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-secret"}
    )
    await client.post("/fault/status=500/v1/chat/completions", json={**CHAT, "stream": True})
    entries = (await client.get("/_fake/requests")).json()["requests"]
    assert [e["path"] for e in entries] == [
        "/v1/chat/completions",
        "/fault/status=500/v1/chat/completions",
    ]
    first, second = entries
    assert first["body"] == CHAT and first["status"] == 200 and first["completed"]
    assert first["authorization"] is True
    assert "authorization" not in first["headers"]
    assert "sk-secret" not in orjson.dumps(entries).decode()
    assert second["status"] == 500 and second["authorization"] is False
    assert (await client.delete("/_fake/requests")).status_code == 200
    assert (await client.get("/_fake/requests")).json()["requests"] == []


async def test_request_log_is_bounded(client: httpx.AsyncClient) -> None:
    for index in range(7):
        await client.get(f"/fault/delay_ms={index}/v1/models")
    paths = [e["path"] for e in (await client.get("/_fake/requests")).json()["requests"]]
    assert paths == [f"/fault/delay_ms={i}/v1/models" for i in range(2, 7)]


async def test_break_after_without_a_socket(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConnectionResetError):
        await client.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-fake-break-after": "2"},
        )
