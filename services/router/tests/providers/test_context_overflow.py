"""``_http.context_overflow`` / ``status_error``: which provider 4xx answers are a context-length
refusal (OpenAI's 400 ``context_length_exceeded``) and which stay the provider's rejection."""

from __future__ import annotations

import httpx
import pytest

from gateway_common.errors import ContextLengthExceeded, ProviderRejected, ProviderUnavailable
from router.providers._http import context_overflow, status_error


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        # vLLM and other OpenAI-compatible servers: OpenAI's words, no code.
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 "
            "tokens (4000 in the messages, 1000 in the completion).",
            None,
            "This model's maximum context length is 4096 tokens. However, you requested 5000 "
            "tokens (4000 in the messages, 1000 in the completion).",
        ),
        ("Too long.", "context_length_exceeded", "Too long."),
        (
            "prompt is too long: 200001 tokens > 200000 maximum",
            None,
            "This model's maximum context length is 200000 tokens. However, your messages "
            "resulted in 200001 tokens. Please reduce the length of the messages.",
        ),
        ("Prompt is too long", None, "Prompt is too long"),
        (
            "The input token count (40000) exceeds the maximum number of tokens allowed (32768).",
            None,
            "This model's maximum context length is 32768 tokens. However, your messages "
            "resulted in 40000 tokens. Please reduce the length of the messages.",
        ),
    ],
)
def test_overflows_are_recognised(message: str, code: str | None, expected: str) -> None:
    err = context_overflow(message, code)
    assert isinstance(err, ContextLengthExceeded)
    assert (err.message, err.param, err.http_status, err.retryable) == (
        expected,
        "messages",
        400,
        False,
    )


@pytest.mark.parametrize(
    "message",
    ["Invalid value for 'temperature'.", "max_tokens is too large: 999999", "", None],
)
def test_other_refusals_are_not(message: str | None) -> None:
    assert context_overflow(message, "invalid_value") is None


def test_only_a_4xx_refusal_maps() -> None:
    said = "This model's maximum context length is 10 tokens."
    assert isinstance(status_error(httpx.Response(400), "p", said), ContextLengthExceeded)
    assert isinstance(status_error(httpx.Response(500), "p", said), ProviderUnavailable)
    assert isinstance(status_error(httpx.Response(400), "p", "bad"), ProviderRejected)


@pytest.mark.parametrize("status", [529])
def test_an_overloaded_provider_is_503_provider_overloaded(status: int) -> None:
    answer = httpx.Response(status, headers={"retry-after": "3"})
    err = status_error(answer, "p", "Overloaded")
    assert isinstance(err, ProviderUnavailable) and err.retryable
    assert (err.http_status, err.code, err.retry_after) == (503, "provider_overloaded", 3.0)
    plain = status_error(httpx.Response(503), "p", "down")
    assert (plain.http_status, plain.code) == (502, "provider_unavailable")
