"""Every failure on /v1 is OpenAI's error object with the right status."""

from __future__ import annotations

import logging

import orjson
import pytest
from pydantic import ValidationError

from edge.api.errors import validation_error
from gateway_common.openai import ChatCompletionRequest, EmbeddingRequest

from .support import Edge, auth

pytestmark = pytest.mark.timeout(30)


def _message(schema: type, body: object) -> tuple[str, str | None]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(ValidationError) as info:
        schema.model_validate_json(raw)
    err = validation_error(info.value.errors())
    assert err.http_status == 400 and err.error_type == "invalid_request_error"
    return err.message, err.param


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"model": "m"}, "Missing required parameter: 'messages'.", "messages"),
        ({"messages": [USER]}, "Missing required parameter: 'model'.", "model"),
        (
            {"model": "m", "messages": "hi"},
            "Invalid type for 'messages': expected an array, but got a string instead.",
            "messages",
        ),
        (
            {"model": "m", "messages": []},
            "Invalid value for 'messages': List should have at least 1 item after validation, not 0.",
            "messages",
        ),
        (
            {"model": "", "messages": [USER]},
            "Invalid value for 'model': String should have at least 1 character.",
            "model",
        ),
        (
            {"model": 5, "messages": [USER]},
            "Invalid type for 'model': expected a string, but got an integer instead.",
            "model",
        ),
        (
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "Invalid value for 'messages[0].role': Input should be 'system', 'developer', 'user', 'assistant', 'tool' or 'function'.",
            "messages[0].role",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "Invalid type for 'messages[0].content': expected a string, an array of content parts, or null, but got an integer instead.",
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [USER, {"role": "user", "content": [{"text": "x"}]}]},
            "Missing required parameter: 'messages[1].content[0].type'.",
            "messages[1].content[0].type",
        ),
        (
            {"model": "m", "messages": [USER], "stream": "yes"},
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "stream",
        ),
        ([1, 2], "Invalid request body: Input should be an object.", None),
    ],
)
def test_chat_validation_messages_name_the_field(
    body: object, message: str, param: str | None
) -> None:
    assert _message(ChatCompletionRequest, body) == (message, param)


def test_invalid_json() -> None:
    message, param = _message(ChatCompletionRequest, b'{"model": ')
    assert message.startswith("We could not parse the JSON body of your request")
    assert param is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e"}, "input"),
        ({"model": "e", "input": []}, "input"),
        ({"model": "e", "input": [1.5]}, "input[0]"),
    ],
)
def test_embedding_validation(body: object, param: str) -> None:
    assert _message(EmbeddingRequest, body)[1] == param


def test_valid_request_keeps_unknown_fields() -> None:
    req = ChatCompletionRequest.model_validate_json(
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}],"name":"n"}],"seed":1,"x_future":{"a":1}}'
    )
    assert req.seed == 1
    assert req.model_extra == {"x_future": {"a": 1}}
    assert req.messages[0].model_extra == {"name": "n"}
    assert req.stream is False


async def test_validation_error_over_http(edge: Edge) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=b'{"model":"m"}', headers=auth())
    assert resp.status_code == 400
    assert resp.json() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }


async def test_malformed_json_is_400(edge: Edge) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=b"{nope", headers=auth())
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


async def test_body_over_limit_is_413(edge: Edge) -> None:
    big = b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * 70_000 + b'"}]}'
    resp = await edge.client.post("/v1/chat/completions", content=big, headers=auth())
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "invalid_request_error"

    async def chunked():  # no content-length: the limit is enforced while reading
        yield big[:40_000]
        yield big[40_000:]

    resp = await edge.client.post("/v1/chat/completions", content=chunked(), headers=auth())
    assert resp.status_code == 413


async def test_unknown_route_is_openai_404(edge: Edge) -> None:
    resp = await edge.client.post("/v1/files", content=b"{}", headers=auth())
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "Unknown request URL: POST /v1/files. This route is not supported by this gateway.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }


async def test_wrong_method_is_openai_405(edge: Edge) -> None:
    resp = await edge.client.get("/v1/chat/completions", headers=auth())
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["allow"]


async def test_unexpected_exception_is_500_with_request_id_logged_once(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom() -> None:
        raise RuntimeError("kaboom")

    edge.app.add_api_route("/v1/boom", boom, methods=["POST"])
    with caplog.at_level(logging.ERROR):
        resp = await edge.client.post("/v1/boom", headers={"x-request-id": "rid-500"})
    assert resp.status_code == 500
    body = resp.json()["error"]
    assert body["type"] == "api_error" and body["code"] == "internal_error"
    assert "rid-500" in body["message"] and "kaboom" not in body["message"]
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1 and "kaboom" in str(records[0].exc_info[1])
