"""Bad input gets OpenAI's error object with the right status: never a 500, never a hang."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"


def _assert_openai_error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def _post(base_url: str, content: bytes, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{base_url}{CHAT}", content=content, headers=headers, timeout=10)


GOOD = b'{"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}'


def test_missing_key_is_401(base_url: str) -> None:
    error = _assert_openai_error(_post(base_url, GOOD, None), 401)
    assert error["type"] == "authentication_error"


def test_wrong_key_is_401_and_the_sdk_raises_authentication_error(base_url: str) -> None:
    _assert_openai_error(_post(base_url, GOOD, "sk-sy-not-a-real-key"), 401)
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sy-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"model": "mock-chat", "messages": [', "JSON"),
        (b'{"model": "mock-chat"}', "messages"),
        (b'{"model": "mock-chat", "messages": []}', "messages"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "mock-chat", "messages": "hello"}', "messages"),
        (b'{"model": "mock-chat", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b"[1, 2, 3]", ""),
    ],
    ids=[
        "malformed",
        "no-messages",
        "empty-messages",
        "no-model",
        "wrong-type",
        "bad-role",
        "array",
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    base_url: str, api_key: str, body: bytes, needle: str
) -> None:
    error = _assert_openai_error(_post(base_url, body, api_key), 400)
    assert error["type"] == "invalid_request_error"
    assert needle.lower() in str(error["message"]).lower()


def test_unknown_model_is_404_model_not_found(
    base_url: str, api_key: str, openai_client: openai.OpenAI
) -> None:
    body = b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}'
    error = _assert_openai_error(_post(base_url, body, api_key), 404)
    assert error["code"] == "model_not_found"
    streamed = body.replace(b'"model"', b'"stream": true, "model"')
    assert (
        _assert_openai_error(_post(base_url, streamed, api_key), 404)["code"] == "model_not_found"
    )
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )


def test_unsupported_routes_say_so_in_openai_shape(base_url: str, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    resp = httpx.post(f"{base_url}/v1/files", headers=headers, timeout=10)
    error = _assert_openai_error(resp, 404)
    assert "/v1/files" in str(error["message"])
