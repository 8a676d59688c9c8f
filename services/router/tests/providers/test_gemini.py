"""Unit tests of the Gemini adapter's translation (the conformance suite covers I/O)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import orjson
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import InvalidRequest, ProviderUnavailable
from router.providers import gemini
from router.providers.base import EmbeddingsAdapter, ProviderRequest, Usage
from router.providers.gemini import StreamTranslator, _map_error, from_provider, to_provider
from router.providers.sse import ServerSentEvent


def _req(body: dict[str, Any], model: str = "gemini-x") -> ProviderRequest:
    return ProviderRequest("chat.completions", body, provider_model=model)


def _sent(body: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(to_provider(_req(body)))


def _user(text: str = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def _call(id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
        **extra,
    }


def test_roles_tool_results_and_thought_signatures() -> None:
    signed = _call(
        "call_0", "w", '{"c": "Paris"}', extra_content={"google": {"thought_signature": "SIG"}}
    )
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            _user("Weather?"),
            {
                "role": "assistant",
                "content": "On it.",
                "tool_calls": [signed, _call("call_1", "t", "{}")],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
            _user("Thanks"),
        ]
    }
    original = copy.deepcopy(body)
    sent = _sent(body)
    assert body == original
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "On it."},
                {"functionCall": {"name": "w", "args": {"c": "Paris"}}, "thoughtSignature": "SIG"},
                {"functionCall": {"name": "t", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "w", "response": {"temp": 21}}},
                {"functionResponse": {"name": "t", "response": {"result": "12:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_a_tool_result_must_answer_a_known_call() -> None:
    body = {"messages": [_user(), {"role": "tool", "tool_call_id": "nope", "content": "x"}]}
    with pytest.raises(InvalidRequest) as caught:
        to_provider(_req(body))
    assert caught.value.param == "messages[1].tool_call_id"


def test_images_inline_and_by_uri() -> None:
    parts = [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    [turn] = _sent({"messages": [{"role": "user", "content": parts}]})["contents"]
    assert turn["parts"] == [
        {"text": "What?"},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGR"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
    ]


def test_generation_config() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }
    body = {
        "messages": [_user()],
        "temperature": 0.3,
        "top_p": 0.5,
        "max_completion_tokens": 99,
        "stop": "END",
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        "user": "u-1",
    }
    sent = _sent(body)
    assert sent["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.5,
        "maxOutputTokens": 99,
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert set(sent) == {"contents", "generationConfig"}
    json_mode = _sent({"messages": [_user()], "response_format": {"type": "json_object"}})
    assert json_mode["generationConfig"] == {"responseMimeType": "application/json"}
    assert "generationConfig" not in _sent({"messages": [_user()]})


_TOOL = {"type": "function", "function": {"name": "lookup", "description": "Find."}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "lookup"}},
            {"mode": "ANY", "allowedFunctionNames": ["lookup"]},
        ),
    ],
)
def test_tools_and_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    fields = {} if choice is None else {"tool_choice": choice}
    sent = _sent({"messages": [_user()], "tools": [_TOOL], **fields})
    assert sent["tools"] == [{"functionDeclarations": [{"name": "lookup", "description": "Find."}]}]
    assert sent.get("toolConfig") == (
        None if expected is None else {"functionCallingConfig": expected}
    )


def test_logprobs_are_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_provider(_req({"messages": [_user()], "logprobs": True}))
    assert caught.value.param == "logprobs"


# -- answers -------------------------------------------------------------------


def _answer(candidates: list[dict[str, Any]], **usage: int) -> bytes:
    return orjson.dumps(
        {
            "candidates": candidates,
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, **usage},
            "modelVersion": "gemini-x-001",
            "responseId": "r1",
        }
    )


def _candidate(parts: list[dict[str, Any]], finish: str | None, index: int = 0) -> dict[str, Any]:
    candidate = {"content": {"role": "model", "parts": parts}, "index": index}
    return candidate | ({"finishReason": finish} if finish else {})


@pytest.mark.parametrize(
    ("reason", "calls", "finish"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
    ],
)
def test_finish_reasons(reason: str, calls: bool, finish: str) -> None:
    parts: list[dict[str, Any]] = [{"text": "x"}]
    if calls:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    result = from_provider(_answer([_candidate(parts, reason)]), "g", created=1)
    assert orjson.loads(result.body)["choices"][0]["finish_reason"] == finish


def test_thoughts_are_reasoning_tokens_and_not_content() -> None:
    parts = [
        {"text": "Thinking about it", "thought": True},
        {"text": "Answer."},
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "SIG"},
    ]
    raw = _answer([_candidate(parts, "STOP")], thoughtsTokenCount=6, cachedContentTokenCount=2)
    result = from_provider(raw, "g", created=9)
    body = orjson.loads(result.body)
    assert (body["id"], body["model"], body["created"]) == ("r1", "gemini-x-001", 9)
    message = body["choices"][0]["message"]
    assert message["content"] == "Answer."
    assert message["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a":1}'},
            "extra_content": {"google": {"thought_signature": "SIG"}},
        }
    ]
    assert result.usage == Usage(
        prompt_tokens=10, completion_tokens=10, total_tokens=20, cached_tokens=2, reasoning_tokens=6
    )
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}


def test_several_candidates_become_several_choices() -> None:
    raw = _answer([_candidate([{"text": "a"}], "STOP"), _candidate([{"text": "b"}], "STOP", 1)])
    choices = orjson.loads(from_provider(raw, "g", created=1).body)["choices"]
    assert [(c["index"], c["message"]["content"]) for c in choices] == [(0, "a"), (1, "b")]


def test_a_blocked_prompt_is_a_content_filter_finish() -> None:
    raw = orjson.dumps(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    )
    [choice] = orjson.loads(from_provider(raw, "g", created=1).body)["choices"]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == ""


def test_a_body_that_is_not_an_answer_is_a_provider_failure() -> None:
    with pytest.raises(ProviderUnavailable):
        from_provider(b'{"candidates": "nope"}', "g", created=1)


# -- stream events -------------------------------------------------------------


def _event(*candidates: dict[str, Any], **extra: Any) -> ServerSentEvent:
    return ServerSentEvent(
        "", orjson.dumps({"candidates": list(candidates), "responseId": "r", **extra})
    )


def test_stream_numbers_tool_calls_across_events_and_skips_thoughts() -> None:
    translator = StreamTranslator("g", forward_usage=False, created=3)
    events = [
        _event(_candidate([{"text": "hm", "thought": True}], None)),
        _event(_candidate([{"functionCall": {"name": "a", "args": {}}}], None)),
        _event(_candidate([{"text": ""}], None)),
        _event(
            _candidate([{"functionCall": {"name": "b", "args": {"x": 1}}}], "STOP"),
            usageMetadata={
                "promptTokenCount": 4,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 1,
            },
        ),
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    choices = [orjson.loads(c.data or b"")["choices"][0] for c in chunks]
    assert [c["delta"] for c in choices] == [
        {"role": "assistant", "content": ""},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "a", "arguments": "{}"},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "b", "arguments": '{"x":1}'},
                }
            ]
        },
        {},  # the finish reason comes in a chunk of its own, as OpenAI sends it
    ]
    assert [c["finish_reason"] for c in choices] == [None, None, None, "tool_calls"]
    assert [c.final for c in chunks] == [False, False, False, True]
    last = translator.finish()
    assert last is not None and last.data is None
    assert last.usage == Usage(
        prompt_tokens=4, completion_tokens=3, total_tokens=7, reasoning_tokens=1
    )


def test_stream_with_two_candidates() -> None:
    translator = StreamTranslator("g", forward_usage=True, created=3)
    chunks = translator.feed(
        _event(_candidate([{"text": "a"}], "STOP"), _candidate([{"text": "b"}], "STOP", 1))
    )
    choices = [orjson.loads(c.data or b"")["choices"][0] for c in chunks]
    assert [(c["index"], c["delta"], c["finish_reason"]) for c in choices] == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "a"}, None),
        (0, {}, "stop"),
        (1, {"role": "assistant", "content": ""}, None),
        (1, {"content": "b"}, None),
        (1, {}, "stop"),
    ]
    assert [c.final for c in chunks] == [False, False, True, False, False, True]


def test_a_first_tool_call_carries_the_role_and_null_content() -> None:
    translator = StreamTranslator("g", forward_usage=False, created=3)
    [call, finish] = translator.feed(
        _event(_candidate([{"functionCall": {"name": "a", "args": {}}}], "STOP"))
    )
    delta = orjson.loads(call.data or b"")["choices"][0]["delta"]
    assert (delta["role"], delta["content"], len(delta["tool_calls"])) == ("assistant", None, 1)
    assert orjson.loads(finish.data or b"")["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_a_blocked_prompt_streams_a_role_chunk_then_a_content_filter_finish() -> None:
    translator = StreamTranslator("g", forward_usage=False, created=3)
    blocked = ServerSentEvent("", b'{"promptFeedback": {"blockReason": "SAFETY"}}')
    chunks = translator.feed(blocked)
    choices = [orjson.loads(c.data or b"")["choices"][0] for c in chunks]
    assert [(c["delta"], c["finish_reason"]) for c in choices] == [
        ({"role": "assistant", "content": ""}, None),
        ({}, "content_filter"),
    ]
    assert translator.finish() is None


def test_stream_error_event_and_cut_stream_fail() -> None:
    translator = StreamTranslator("g", forward_usage=True, created=3)
    translator.feed(_event(_candidate([{"text": "a"}], None)))
    with pytest.raises(ProviderUnavailable, match="before a finish reason"):
        translator.finish()
    error = ServerSentEvent(
        "", b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}'
    )
    with pytest.raises(ProviderUnavailable, match="mid-stream: overloaded"):
        translator.feed(error)


def test_a_429_honours_the_retry_info_in_its_body() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}
                ],
            }
        }
    )
    err = _map_error(httpx.Response(429, content=body), "g")
    assert isinstance(err, ProviderUnavailable) and err.retry_after == 13.0


@pytest.mark.timeout(5)
async def test_urls_key_header_and_no_embeddings() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=_answer([_candidate([{"text": "x"}], "STOP")]))

    entry = ProviderEntry(kind="gemini", base_url="https://g.test/v1beta")
    adapter = gemini.build("g", entry, "AIza-conf", transport=httpx.MockTransport(handler))
    try:
        assert not isinstance(adapter, EmbeddingsAdapter)
        await adapter.complete(
            _req({"messages": [_user()]}, model="models/gemini-2.5-pro"), deadline=None
        )
    finally:
        await adapter.aclose()
    [request] = seen
    assert str(request.url) == "https://g.test/v1beta/models/gemini-2.5-pro:generateContent"
    assert request.headers["x-goog-api-key"] == "AIza-conf"
    assert "authorization" not in request.headers
