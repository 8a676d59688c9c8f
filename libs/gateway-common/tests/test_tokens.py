"""Prompt token counting: the shipped encodings, the cookbook's rules, the estimate, the byte
bound, OpenAI's messages, and the tokenizer a catalog model gets."""

from __future__ import annotations

import gzip
import hashlib
import threading
from importlib import resources
from typing import Any
from unittest import mock

import orjson
import pytest
import tiktoken
from tiktoken_ext import openai_public

from gateway_common import tokens
from gateway_common.tokens import _encodings

#: Shared by the tests of this module: building o200k_base costs about half a second.
ENCODINGS = tokens.Encodings()


def _count(name: tokens.TokenizerName) -> tokens.TextCount:
    return tokens.text_counter(ENCODINGS, name)


# -- the shipped encodings --------------------------------------------------------


@pytest.mark.parametrize("name", tokens.TOKENIZERS)
def test_shipped_files_are_the_ones_tiktoken_expects(name: str) -> None:
    packed = resources.files("gateway_common.tokens").joinpath(f"{name}.tiktoken.gz").read_bytes()
    expected = {"o200k_base": "446a9538", "cl100k_base": "223921b7"}[name]
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest().startswith(expected)


@pytest.mark.parametrize("name", tokens.TOKENIZERS)
def test_patterns_and_special_tokens_are_tiktokens(name: str) -> None:
    """Ours equal what ``tiktoken_ext.openai_public`` builds (its download stubbed out)."""
    with mock.patch.object(openai_public, "load_tiktoken_bpe", return_value={}):
        theirs = getattr(openai_public, name)()
    spec = _encodings._SPECS[name]  # type: ignore[index]
    assert spec.pat_str == theirs["pat_str"]
    assert dict(spec.special_tokens) == theirs["special_tokens"]


def test_encodings_count_known_texts() -> None:
    # The token ids OpenAI's tokenizer page and tiktoken give for "hello world".
    assert ENCODINGS.get("o200k_base").encode_ordinary("hello world") == [24912, 2375]
    assert ENCODINGS.get("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    assert _count("cl100k_base")("tiktoken is great!") == 6  # the cookbook's example
    assert _count("o200k_base")("<|endoftext|>") > 1  # special tokens in user text are text
    encoding = ENCODINGS.get("o200k_base")
    assert isinstance(encoding, tiktoken.Encoding) and encoding.n_vocab == 200019


def test_encodings_are_built_once_on_first_use() -> None:
    encodings = tokens.Encodings()
    assert encodings.loaded() == frozenset()
    built: list[tiktoken.Encoding] = []
    threads = [
        threading.Thread(target=lambda: built.append(encodings.get("cl100k_base")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(built) == 4 and all(enc is built[0] for enc in built)
    assert encodings.loaded() == {"cl100k_base"}


def test_an_altered_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _encodings._SPECS["cl100k_base"]
    altered = _encodings._Spec("0" * 64, spec.pat_str, spec.special_tokens)
    monkeypatch.setattr(_encodings, "_SPECS", {"cl100k_base": altered})
    with pytest.raises(tokens.EncodingError, match="SHA-256"):
        tokens.Encodings().get("cl100k_base")


def test_the_estimate_needs_no_encoding() -> None:
    encodings = tokens.Encodings()
    count = tokens.text_counter(encodings, None)
    assert count is tokens.estimate
    assert encodings.loaded() == frozenset()
    assert [tokens.estimate(t) for t in ("", "a", "abcdef", "abcdefg", "é" * 12)] == [0, 1, 1, 2, 2]


# -- what a body counts -------------------------------------------------------------


def test_chat_counts_as_the_openai_cookbook() -> None:
    """The cookbook's example conversation: 129 prompt tokens for gpt-4 and 124 for gpt-4o,
    as its num_tokens_from_messages (tokens_per_message=3, tokens_per_name=1) counts."""
    messages = [
        {
            "role": "system",
            "content": "You are a helpful, pattern-following assistant that translates "
            "corporate jargon into plain English.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "New synergies will help drive top-line growth.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Let's talk later when we're less busy about how to do better.",
        },
        {
            "role": "user",
            "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
        },
    ]
    count = _count("cl100k_base")
    expected = 3
    for message in messages:
        expected += 3 + sum(count(v) for v in message.values())
        expected += 1 if "name" in message else 0
    assert tokens.chat_prompt_tokens({"messages": messages}, count) == expected == 129
    assert tokens.chat_prompt_tokens({"messages": messages}, _count("o200k_base")) == 124


def test_chat_parts_images_tool_calls_and_tools() -> None:
    count = _count("o200k_base")
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}},
    }
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + "A" * 9000},
                    },
                    {"type": "input_audio", "input_audio": {"data": "B" * 9000, "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
        ],
        "tools": [tool],
    }
    expected = (
        3
        + (3 + count("user") + count("what is this") + tokens.IMAGE_TOKENS)
        + (3 + count("assistant") + count("get_weather") + count('{"city":"Paris"}'))
        + (3 + count("tool") + count('{"temp_c": 21}'))
        + count(orjson.dumps(tool).decode())
    )
    assert tokens.chat_prompt_tokens(body, count) == expected
    assert expected < 200  # neither image nor audio bytes were counted as text


def test_responses_counts_instructions_items_and_history() -> None:
    count = _count("o200k_base")
    body = {
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "hello"}],
            },
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x" * 500}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "42"},
            {"role": "user", "content": "more", "type": "message"},
            {"type": "input_image", "image_url": "https://example.test/cat.png"},
        ],
    }
    expected = (
        3
        + (3 + count("system") + count("Be brief."))
        + (3 + count("user") + count("hi"))
        + (3 + count("assistant") + count("hello"))
        + (3 + count("f") + count("{}"))
        + (3 + count("42"))
        + (3 + count("user") + count("more"))
        + count(orjson.dumps(body["input"][-1]).decode())  # type: ignore[index]
    )
    assert tokens.responses_prompt_tokens(body, count) == expected
    assert tokens.prompt_tokens("responses", {"input": "hi"}, count) == 3 + 3 + count("user") + 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "nope"},
        {"messages": [1, None, "x", {"role": 5, "content": {"a": 1}, "tool_calls": [3]}]},
        {"messages": [{"role": "user", "content": [None, 4, {"type": "text", "text": 7}]}]},
        {"input": 3, "instructions": None, "tools": "x"},
        {"input": [None, 2, {"type": "function_call", "arguments": {"a": 1}}]},
    ],
)
def test_strange_shapes_never_raise(body: dict[str, Any]) -> None:
    assert tokens.chat_prompt_tokens(body, tokens.estimate) >= 3
    assert tokens.responses_prompt_tokens(body, tokens.estimate) >= 3


# -- the byte bound -------------------------------------------------------------------

_SAMPLES: list[dict[str, Any]] = [
    {"model": "m", "messages": [{"role": "user", "content": "x"}]},
    {"model": "m", "messages": [{"role": "user", "content": "a" * 3000}]},
    {"model": "m", "messages": [{"role": "user", "name": "n", "content": "é ü 漢字 " * 300}]},
    {"model": "m", "messages": [{"role": "user", "content": " \n\t" * 500}] * 40},
    {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "u"}}] * 30,
            }
        ],
    },
    {"model": "m", "input": [{"type": "input_image", "file_id": "f"}] * 10, "instructions": "x"},
    {"model": "m", "input": "short", "tools": [{"type": "function", "name": "f"}]},
]


@pytest.mark.parametrize("sample", _SAMPLES)
@pytest.mark.parametrize("tokenizer", [None, *tokens.TOKENIZERS])
def test_the_byte_bound_never_undercounts(sample: dict[str, Any], tokenizer: Any) -> None:
    raw = orjson.dumps(sample)
    count = tokens.text_counter(ENCODINGS, tokenizer)
    operation = "responses" if "input" in sample else "chat.completions"
    counted = tokens.prompt_tokens(operation, sample, count)
    bound = len(raw) + tokens.IMAGE_TOKENS * raw.count(b"image")
    assert counted <= bound
    assert tokens.fits_for_sure(raw, bound)
    assert tokens.fits_for_sure(raw, counted) == (bound <= counted)


def test_fits_for_sure_is_false_past_the_bytes() -> None:
    raw = b'{"messages":[{"role":"user","content":"abc"}]}'
    assert tokens.fits_for_sure(raw, len(raw))
    assert not tokens.fits_for_sure(raw, len(raw) - 1)
    assert not tokens.fits_for_sure(raw, -5)


def test_the_estimate_is_below_real_counts_of_ordinary_text() -> None:
    """Text a provider accepts is never refused by the estimate: it counts fewer tokens than
    o200k_base (the most frugal tokenizer we ship) for prose, code, JSON and other scripts."""
    count = _count("o200k_base")
    texts = [
        tokens.__doc__ or "",
        _encodings.__doc__ or "",
        orjson.dumps(_SAMPLES).decode(),
        "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 20,
        "北京是中华人民共和国的首都，是全国的政治中心、文化中心。" * 20,  # noqa: RUF001
        "Die Bundesrepublik Deutschland ist ein Bundesstaat in Mitteleuropa. " * 20,
        "def f(x: int) -> int:\n    return x * 2  # double\n" * 20,
    ]
    for text in texts:
        assert tokens.estimate(text) < count(text), text[:40]


# -- OpenAI's messages -----------------------------------------------------------------


def test_overflow_messages_are_openais() -> None:
    assert tokens.overflow_message(128000, 128000, 0) is None
    assert tokens.overflow_message(128000, 127000, 1000) is None
    assert tokens.overflow_message(128000, 512345, 0) == (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 512345 tokens. Please reduce the length of the messages."
    )
    assert tokens.overflow_message(128000, 127000, 2000) == (
        "This model's maximum context length is 128000 tokens. However, you requested "
        "129000 tokens (127000 in the messages, 2000 in the completion). Please reduce the "
        "length of the messages or completion."
    )
    assert tokens.CONTEXT_LENGTH_EXCEEDED == "context_length_exceeded"


# -- which tokenizer a model gets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "public", "deployments", "expected"),
    [
        (None, "gpt-4o", [("openai", "gpt-4o")], "o200k_base"),
        (None, "fast", [("openai", "gpt-4o-mini-2024-07-18")], "o200k_base"),
        (None, "gpt-4.1", [("openai", "gpt-4.1"), ("azure_openai", "my-deployment")], "o200k_base"),
        (None, "smart", [("openai", "o3"), ("openai", "gpt-5")], "o200k_base"),
        (None, "old", [("openai", "gpt-4-0613")], "cl100k_base"),
        (None, "gpt-35-turbo", [("azure_openai", "prod-35")], "cl100k_base"),
        (None, "oss", [("openai", "gpt-oss-120b")], "o200k_base"),
        (None, "mixed", [("openai", "gpt-4o"), ("openai", "gpt-4")], None),
        (None, "gpt-4o", [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4")], None),
        (None, "claude", [("anthropic", "claude-sonnet-4")], None),
        (None, "mock-chat", [("openai", "mock-chat")], None),
        (None, "llama", [("openai", "llama-3.1-70b")], None),
        (None, "davinci", [("openai", "text-davinci-003")], None),  # p50k: not shipped
        ("cl100k_base", "mock-chat", [("openai", "mock-chat")], "cl100k_base"),
        ("estimate", "gpt-4o", [("openai", "gpt-4o")], None),
        (None, "empty", [], None),
    ],
)
def test_tokenizer_for(
    explicit: str | None, public: str, deployments: list[tuple[str, str]], expected: str | None
) -> None:
    assert tokens.tokenizer_for(explicit, public, deployments) == expected
