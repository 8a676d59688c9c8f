"""Every OpenAI chat field passes the edge's check unchanged; wrong types and limits are 400s."""

from __future__ import annotations

import orjson
import pytest

from edge import EdgeSettings

from .support import Edge, RouterServer, auth

pytestmark = pytest.mark.timeout(30)

#: One request using every documented chat parameter, plus one nobody knows yet.
FULL = {
    "model": "mock-chat",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            ],
            "name": "ann",
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"at":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "look",
                "description": "look at something",
                "parameters": {"type": "object", "properties": {"at": {"type": "string"}}},
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "look"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
    "temperature": 1,
    "top_p": 0.9,
    "stop": ["\n\n", "END"],
    "n": 2,
    "seed": 42,
    "max_tokens": 100,
    "max_completion_tokens": 200,
    "presence_penalty": 0.1,
    "frequency_penalty": -0.1,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "user": "user-1234",
    "metadata": {"trace": "abc"},
    "service_tier": "default",
    "x_not_yet_in_openai": {"nested": [1, None, "x"]},
}


async def test_every_field_reaches_the_router_byte_for_byte(
    edge: Edge, router: RouterServer
) -> None:
    raw = orjson.dumps(FULL)
    resp = await edge.client.post("/v1/chat/completions", content=raw, headers=auth())
    assert resp.status_code == 200, resp.text
    assert router.servicer.calls[-1][0].body == raw


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("temperature", "hot", "temperature"),
        ("top_p", [1], "top_p"),
        ("n", 1.5, "n"),
        ("seed", "42", "seed"),
        ("max_tokens", "100", "max_tokens"),
        ("max_completion_tokens", True, "max_completion_tokens"),
        ("stop", 5, "stop"),
        ("logprobs", "yes", "logprobs"),
        ("top_logprobs", "3", "top_logprobs"),
        ("user", 7, "user"),
        ("metadata", "m", "metadata"),
        ("tools", {"type": "function"}, "tools"),
        (
            "tools",
            [{"type": "function", "function": {"description": "x"}}],
            "tools[0].function.name",
        ),
        ("tool_choice", 3, "tool_choice"),
        ("parallel_tool_calls", "no", "parallel_tool_calls"),
        ("response_format", "json", "response_format"),
        ("response_format", {"json_schema": {}}, "response_format.type"),
    ],
)
async def test_wrong_types_are_400_naming_the_field(
    edge: Edge, router: RouterServer, field: str, value: object, param: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}
    resp = await edge.client.post(
        "/v1/chat/completions", content=orjson.dumps(body), headers=auth()
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]
    assert not router.servicer.calls


async def test_nulls_are_accepted_for_optional_fields(edge: Edge) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        **dict.fromkeys(["temperature", "n", "stop", "tools", "tool_choice", "metadata"]),
    }
    resp = await edge.client.post(
        "/v1/chat/completions", content=orjson.dumps(body), headers=auth()
    )
    assert resp.status_code == 200, resp.text


class TestMessageLimit:
    """``GATEWAY_MAX_MESSAGES``, set to 3 here."""

    @pytest.fixture
    def settings(self, settings: EdgeSettings) -> EdgeSettings:
        return settings.model_copy(update={"max_messages": 3})

    async def test_too_many_messages_is_400_naming_messages(
        self, edge: Edge, router: RouterServer
    ) -> None:
        def body(count: int) -> bytes:
            return orjson.dumps(
                {"model": "m", "messages": [{"role": "user", "content": "hi"}] * count}
            )

        ok = await edge.client.post("/v1/chat/completions", content=body(3), headers=auth())
        assert ok.is_success
        resp = await edge.client.post("/v1/chat/completions", content=body(4), headers=auth())
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert (error["param"], error["code"]) == ("messages", "too_many_messages")
        assert "limit is 3" in error["message"]
        assert len(router.servicer.calls) == 1
