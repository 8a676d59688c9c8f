"""``edge.context_window``: which bodies are refused, with which count, param and message,
and that a body whose bytes prove it fits is never counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.api.errors import error_response, ok_error_response
from edge.context_window import ContextWindow
from edge.pricebook import PriceBook
from gateway.router.v1 import router_pb2
from gateway_common import tokens
from gateway_common.errors import ContextLengthExceeded, from_detail, to_detail

pytestmark = pytest.mark.timeout(60)

CHAT = router_pb2.OPERATION_CHAT_COMPLETIONS
RESPONSES = router_pb2.OPERATION_RESPONSES
EMBEDDINGS = router_pb2.OPERATION_EMBEDDINGS
CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  claude: {kind: anthropic, base_url: "http://127.0.0.1:9/v1"}
models:
  exact:
    aliases: [exact-latest]
    deployments: [{provider: fake, model: e}]
    context_window: 1000
    tokenizer: o200k_base
  gpt-4o:
    deployments: [{provider: fake, model: gpt-4o}]
    context_window: 1000
  estimated:
    deployments: [{provider: claude, model: c}]
    context_window: 1000
  unbounded:
    deployments: [{provider: fake, model: u}]
"""
#: One o200k_base token per word (" hello"), so a prompt's count is easy to reason about.
WORD = " hello"


@pytest.fixture(scope="module")
def encodings() -> tokens.Encodings:
    return tokens.Encodings()


@pytest.fixture
def window(tmp_path: Path, encodings: tokens.Encodings) -> ContextWindow:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return ContextWindow(PriceBook(path, default_max_output_tokens=50), encodings)


def chat(model: str, text: str, **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


def exact_count(body: bytes, encodings: tokens.Encodings) -> int:
    count = tokens.text_counter(encodings, "o200k_base")
    return tokens.chat_prompt_tokens(orjson.loads(body), count)


async def test_a_body_whose_bytes_fit_is_never_counted(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    fresh = tokens.Encodings()
    checker = ContextWindow(PriceBook(path, default_max_output_tokens=50), fresh)
    await checker.check(CHAT, "exact", chat("exact", "hi" * 400), max_output_tokens=100)
    assert fresh.loaded() == frozenset()  # no encoding built: the byte bound sufficed


async def test_a_prompt_over_the_window_is_refused_with_the_exact_count(
    window: ContextWindow, encodings: tokens.Encodings
) -> None:
    body = chat("exact", WORD * 1200)
    with pytest.raises(ContextLengthExceeded) as caught:
        await window.check(CHAT, "exact", body)
    prompt = exact_count(body, encodings)
    assert 1200 < prompt < 1220
    err = caught.value
    assert (err.http_status, err.code, err.param, err.error_type) == (
        400,
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert err.message == (
        f"This model's maximum context length is 1000 tokens. However, your messages "
        f"resulted in {prompt} tokens. Please reduce the length of the messages."
    )
    # An alias and a provider-prefixed name resolve to the same window.
    for name in ("exact-latest", "fake:exact"):
        with pytest.raises(ContextLengthExceeded):
            await window.check(CHAT, name, body)


async def test_long_in_bytes_but_within_the_window_passes(window: ContextWindow) -> None:
    # 1500 bytes of body, under 1000 tokens: parsed and counted, then let through.
    await window.check(CHAT, "exact", chat("exact", WORD * 240))


async def test_a_prompt_that_fits_only_without_its_max_tokens_is_refused(
    window: ContextWindow, encodings: tokens.Encodings
) -> None:
    body = chat("exact", WORD * 600)
    prompt = exact_count(body, encodings)
    await window.check(CHAT, "exact", body, max_output_tokens=1000 - prompt)
    with pytest.raises(ContextLengthExceeded) as caught:
        await window.check(CHAT, "exact", body, max_output_tokens=1001 - prompt)
    assert caught.value.message == (
        f"This model's maximum context length is 1000 tokens. However, you requested 1001 "
        f"tokens ({prompt} in the messages, {1001 - prompt} in the completion). Please reduce "
        "the length of the messages or completion."
    )


async def test_tiktoken_names_an_openai_models_tokenizer(
    window: ContextWindow, encodings: tokens.Encodings
) -> None:
    body = chat("gpt-4o", WORD * 1200)
    with pytest.raises(ContextLengthExceeded) as caught:
        await window.check(CHAT, "gpt-4o", body)
    assert f"resulted in {exact_count(body, encodings)} tokens" in caught.value.message


async def test_an_unknown_tokenizer_is_estimated(window: ContextWindow) -> None:
    # The estimate: one token per 6 characters. 5700 letters -> 950 (+ framing) fits,
    # 6600 -> 1100 does not; neither would pass the byte bound.
    await window.check(CHAT, "estimated", chat("estimated", "x" * 5700))
    body = chat("estimated", "x" * 6600)
    with pytest.raises(ContextLengthExceeded) as caught:
        await window.check(CHAT, "estimated", body)
    expected = tokens.chat_prompt_tokens(orjson.loads(body), tokens.estimate)
    assert 1100 < expected < 1110
    assert f"resulted in {expected} tokens" in caught.value.message


async def test_responses_take_openais_responses_wording(window: ContextWindow) -> None:
    body = orjson.dumps({"model": "exact", "input": WORD * 1200, "instructions": "be terse"})
    with pytest.raises(ContextLengthExceeded) as caught:
        await window.check(RESPONSES, "exact", body)
    assert (caught.value.param, caught.value.message) == ("input", tokens.RESPONSES_OVERFLOW)
    history = [{"role": "user", "content": WORD * 400}] * 3  # an expanded chain counts too
    with pytest.raises(ContextLengthExceeded):
        await window.check(RESPONSES, "exact", orjson.dumps({"model": "exact", "input": history}))
    await window.check(RESPONSES, "exact", orjson.dumps({"model": "exact", "input": WORD * 500}))


@pytest.mark.parametrize(
    ("op", "model", "body"),
    [
        (CHAT, "unbounded", chat("unbounded", WORD * 5000)),  # context_window 0: unknown
        (CHAT, "not-in-catalog", chat("not-in-catalog", WORD * 5000)),
        (EMBEDDINGS, "exact", orjson.dumps({"model": "exact", "input": WORD * 5000})),
        (CHAT, "exact", b"{" + b" " * 5000),  # malformed: the body check's to answer
        (CHAT, "exact", b"[" + b"1," * 3000 + b"1]"),
    ],
)
async def test_what_is_not_checked(
    window: ContextWindow, op: router_pb2.Operation.ValueType, model: str, body: bytes
) -> None:
    await window.check(op, model, body)


def test_the_refusal_in_both_api_shapes() -> None:
    err = ContextLengthExceeded("This model's maximum context length is 1000 tokens. ...")
    openai = error_response(err)
    assert openai.status_code == 400
    assert orjson.loads(bytes(openai.body)) == {
        "error": {
            "message": err.message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    ok = ok_error_response(err)
    assert ok.status_code == 400
    assert orjson.loads(bytes(ok.body)) == {
        "ok": False,
        "error": err.message,
        "code": "context_length_exceeded",
    }


def test_the_refusal_crosses_grpc_as_itself() -> None:
    err = ContextLengthExceeded("too long", param="input")
    back = from_detail(to_detail(err))
    assert isinstance(back, ContextLengthExceeded)
    assert (back.http_status, back.code, back.param, back.message, back.retryable) == (
        400,
        "context_length_exceeded",
        "input",
        "too long",
        False,
    )
