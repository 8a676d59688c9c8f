"""The fake provider's deterministic payloads (pure functions, no server)."""

from __future__ import annotations

import base64
import hashlib
import struct

import orjson
import pytest

from fakeprovider import replies

BODY = {
    "model": "mock-chat",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "big world"}],
        },
    ],
}


def expected_digest(body: dict) -> str:
    stripped = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def test_digest_ignores_stream_options_and_key_order() -> None:
    streamed = {"stream": True, "stream_options": {"include_usage": True}, **BODY}
    reordered = dict(reversed(list(BODY.items())))
    assert replies.digest(BODY) == replies.digest(streamed) == replies.digest(reordered)
    assert replies.digest(BODY) == expected_digest(BODY)
    assert replies.digest({**BODY, "temperature": 0.5}) != replies.digest(BODY)


def test_chat_completion_reply_and_usage() -> None:
    key = expected_digest(BODY)
    answer = replies.chat_completion(BODY)
    assert answer["id"] == f"chatcmpl-{key}"
    assert answer["object"] == "chat.completion"
    assert answer["created"] == 1700000000
    assert answer["model"] == "mock-chat"
    assert answer["system_fingerprint"] == "fp_fake"
    choice = answer["choices"][0]
    assert choice["message"]["content"] == f"hello big world [{key}]"
    assert choice["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_reply_without_user_message() -> None:
    body = {"model": "mock-chat", "messages": [{"role": "system", "content": "x"}]}
    assert (
        replies.chat_completion(body)["choices"][0]["message"]["content"]
        == f" [{expected_digest(body)}]"
    )


def test_reasoning_model_counts_reasoning_tokens() -> None:
    usage = replies.chat_completion({**BODY, "model": "mock-reasoning"})["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 5}
    assert usage["completion_tokens"] == 4 + 5
    assert usage["total_tokens"] == 5 + 9


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_chunks_sequence(include_usage: bool) -> None:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": include_usage}}
    chunks = [orjson.loads(c) for c in replies.chat_chunks(body)]
    key = expected_digest(BODY)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d["content"] for d in deltas[1:-1]] == ["hello", " big", " world", f" [{key}]"]
    assert deltas[-1] == {}
    assert chunks[len(deltas) - 1]["choices"][0]["finish_reason"] == "stop"
    assert all(
        c["id"] == f"chatcmpl-{key}" and c["object"] == "chat.completion.chunk" for c in chunks
    )
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["prompt_tokens"] == 5
        assert len(chunks) == len(deltas) + 1
    else:
        assert len(chunks) == len(deltas)


def test_embeddings_float_and_base64_agree() -> None:
    body = {"model": "mock-embed", "input": ["one two", "three"], "dimensions": 5}
    floats = replies.embeddings(body)
    encoded = replies.embeddings({**body, "encoding_format": "base64"})
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [d["index"] for d in floats["data"]] == [0, 1]
    for plain, packed in zip(floats["data"], encoded["data"], strict=True):
        assert len(plain["embedding"]) == 5
        assert (
            list(struct.unpack("<5f", base64.b64decode(packed["embedding"]))) == plain["embedding"]
        )
        assert sum(v * v for v in plain["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert floats["data"][0]["embedding"] != floats["data"][1]["embedding"]
    assert replies.embeddings(body) == floats


def test_embeddings_defaults_and_token_arrays() -> None:
    single = replies.embeddings({"model": "mock-embed", "input": "hi"})
    assert len(single["data"]) == 1 and len(single["data"][0]["embedding"]) == 8
    tokens = replies.embeddings({"model": "mock-embed", "input": [[1, 2, 3], [4]]})
    assert tokens["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": [1.5]},
        {"input": "x", "dimensions": 0},
        {"input": "x", "encoding_format": "int8"},
    ],
)
def test_embeddings_rejects_invalid(body: dict) -> None:
    with pytest.raises(ValueError):
        replies.embeddings(body)


def test_error_body_types() -> None:
    assert replies.error_body(429, "slow down")["error"]["type"] == "rate_limit_error"
    assert replies.error_body(503, "down")["error"]["type"] == "server_error"
