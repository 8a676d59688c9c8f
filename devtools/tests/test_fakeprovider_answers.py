"""The fake provider's tool-call, refusal and ``n`` modes, and the bearer fingerprint."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson
import pytest

from fakeprovider import FakeProviderApp, replies
from fakeprovider.answers import ARGUMENT_DELTA_CHARS, REFUSE_MARKER

pytestmark = pytest.mark.timeout(10)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
USER = "weather in Paris and Tokyo please"


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-chat", "messages": [{"role": "user", "content": USER}], **extra}


def reassemble(chunks: list[bytes]) -> dict[int, dict[int, dict[str, str]]]:
    """Tool calls per choice index, rebuilt from deltas exactly as an SDK does."""
    calls: dict[int, dict[int, dict[str, str]]] = {}
    for raw in chunks:
        for choice in orjson.loads(raw)["choices"]:
            for delta in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(choice["index"], {}).setdefault(
                    delta["index"], {"id": "", "name": "", "arguments": ""}
                )
                call["id"] += delta.get("id", "")
                call["name"] += delta.get("function", {}).get("name", "")
                call["arguments"] += delta.get("function", {}).get("arguments", "")
    return calls


def test_required_calls_every_tool_with_the_user_text_as_arguments() -> None:
    request = body(tools=TOOLS, tool_choice="required")
    key = replies.digest(request)
    answer = replies.chat_completion(request)
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    arguments = orjson.dumps({"text": USER}).decode()
    assert choice["message"]["tool_calls"] == [
        {
            "id": f"call_{key}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        for i, name in enumerate(["get_weather", "get_time"])
    ]
    assert answer["usage"]["completion_tokens"] == 2 * len(arguments.split())


def test_named_function_and_parallel_false_call_one_tool() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    calls = replies.chat_completion(body(tools=TOOLS, tool_choice=named))["choices"][0]
    assert [c["function"]["name"] for c in calls["message"]["tool_calls"]] == ["get_time"]
    single = replies.chat_completion(
        body(tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    )
    assert len(single["choices"][0]["message"]["tool_calls"]) == 1


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_tools_without_a_forced_call_answer_text(choice: str | None) -> None:
    request = body(tools=TOOLS, **({"tool_choice": choice} if choice else {}))
    message = replies.chat_completion(request)["choices"][0]["message"]
    assert message["content"] == f"{USER} [{replies.digest(request)}]"
    assert "tool_calls" not in message


def test_streamed_tool_calls_keep_id_name_and_argument_deltas() -> None:
    request = body(tools=TOOLS, tool_choice="required", n=2, stream=True)
    chunks = replies.chat_chunks(request)
    key = replies.digest(request)
    arguments = orjson.dumps({"text": USER}).decode()
    assert reassemble(chunks) == {
        index: {
            0: {"id": f"call_{key}_0", "name": "get_weather", "arguments": arguments},
            1: {"id": f"call_{key}_1", "name": "get_time", "arguments": arguments},
        }
        for index in (0, 1)
    }
    pieces = [
        d["function"]["arguments"]
        for raw in chunks
        for c in orjson.loads(raw)["choices"]
        if c["index"] == 0
        for d in c["delta"].get("tool_calls") or ()
        if "id" not in d
    ]
    assert len(pieces) > 4 and all(len(p) <= ARGUMENT_DELTA_CHARS for p in pieces)
    finishes = [c for raw in chunks for c in orjson.loads(raw)["choices"] if c["finish_reason"]]
    assert [(c["index"], c["finish_reason"]) for c in finishes] == [
        (0, "tool_calls"),
        (1, "tool_calls"),
    ]


def test_n_choices_are_alike_and_counted() -> None:
    one = replies.chat_completion(body())
    three = replies.chat_completion(body(n=3))
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in three["choices"]} == {
        f"{USER} [{replies.digest(body(n=3))}]"
    }
    assert three["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]


def test_refusal() -> None:
    request = {"model": "mock-chat", "messages": [{"role": "user", "content": REFUSE_MARKER}]}
    message = replies.chat_completion(request)["choices"][0]["message"]
    refusal = f"I can't help with that. [{replies.digest(request)}]"
    assert message == {"role": "assistant", "content": None, "refusal": refusal}
    deltas = [orjson.loads(c)["choices"][0]["delta"] for c in replies.chat_chunks(request)]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": ""}
    assert "".join(d.get("refusal") or "" for d in deltas) == refusal


@pytest.mark.parametrize("n", [0, 17, "2", True])
def test_bad_n_is_refused(n: object) -> None:
    with pytest.raises(ValueError, match="n must be"):
        replies.chat_completion(body(n=n))


async def test_bad_n_is_a_400_and_the_bearer_is_only_fingerprinted() -> None:
    app = FakeProviderApp()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        bad = await client.post("/v1/chat/completions", json=body(n=0, stream=True))
        assert bad.status_code == 400 and "n must be" in bad.json()["error"]["message"]
        headers = {"authorization": "Bearer sk-user-own-key"}
        assert (
            await client.post("/v1/embeddings", json={"input": "x"}, headers=headers)
        ).is_success
        log = (await client.get("/_fake/requests")).json()["requests"]
    assert log[0]["bearer_sha256"] is None
    assert log[1]["bearer_sha256"] == hashlib.sha256(b"sk-user-own-key").hexdigest()
    assert b"sk-user-own-key" not in orjson.dumps(log)


def test_a_verbatim_message_is_answered_with_its_rest_exactly() -> None:
    said = '{"name": "Ada", "email": "ada@example.com"}'
    request = {"model": "mock-chat", "messages": [{"role": "user", "content": "[verbatim]" + said}]}
    completion = replies.chat_completion(request)
    assert completion["choices"][0]["message"]["content"] == said
    streamed = "".join(
        orjson.loads(raw)["choices"][0]["delta"].get("content") or ""
        for raw in replies.chat_chunks(request)
        if orjson.loads(raw)["choices"]
    )
    assert streamed == said
