"""Prompts past the context window, through the real stack and the official SDK.

A prompt that cannot fit is OpenAI's 400 ``context_length_exceeded`` before any
provider is called or paid: the fake provider's recorder (``helpers.fake_requests``)
shows nothing reached it and billing has no ledger entry for the request. The same for
the Responses API (param ``input``), for streams, and on the Gateway API in its own
shape. A model whose catalog window is wider than its provider's (``mock-wide-window``)
lets the prompt through; the provider's own refusal reaches the client as the same 400,
without failing over. A body over the size limit is still 413.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from devtools.stack import Stack
from fakeprovider import windows
from gateway_common import tokens
from gateway_common.db import sync_url
from tests.integration.helpers import fake_requests, ledger_entry, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: The issue's example: a 2 MB message to mock-chat (window 128,000 tokens).
TWO_MB = 2_000_000
#: One o200k_base token a word.
WORD = " hello"


def _marker() -> str:
    return secrets.token_hex(6)


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _request_id(err: openai.APIStatusError) -> str:
    return err.response.headers["x-request-id"]


def _assert_unbilled(stack: Stack, client: openai.OpenAI, refused: list[str]) -> None:
    """None of the ``refused`` request ids has a ledger entry, once a later answered call's
    entry has been written (billing has caught up with what came before it)."""
    db_url = sync_url(stack.database_url("billing"))
    later = client.chat.completions.with_raw_response.create(
        model="mock-chat", messages=_user(f"after {_marker()}")
    )
    poll(lambda: ledger_entry(db_url, later.headers["x-request-id"]))
    for request_id in refused:
        assert ledger_entry(db_url, request_id) is None, request_id


def test_two_mb_to_mock_chat_is_refused_before_the_provider(
    stack: Stack, openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    refused: list[str] = []
    for stream in (False, True):
        marker = _marker()
        text = marker + "x" * TWO_MB
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.chat.completions.create(
                model="mock-chat", messages=_user(text), stream=stream
            )
        err = caught.value
        assert (err.status_code, err.code, err.param, err.type) == (
            400,
            "context_length_exceeded",
            "messages",
            "invalid_request_error",
        ), err.body
        # mock-chat's tokenizer is unknown: the estimate (6 characters a token) counts.
        body = {"model": "mock-chat", "messages": _user(text), "stream": stream}
        expected = tokens.chat_prompt_tokens(body, tokens.estimate)
        assert err.body["message"] == (  # type: ignore[index]
            f"This model's maximum context length is 128000 tokens. However, your messages "
            f"resulted in {expected} tokens. Please reduce the length of the messages."
        )
        assert fake_requests(fake_provider_url, marker) == []
        refused.append(_request_id(err))
    _assert_unbilled(stack, openai_client, refused)


def test_responses_past_the_window_name_input(
    stack: Stack, openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    refused: list[str] = []
    for stream in (False, True):
        marker = _marker()
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(
                model="mock-reasoning",
                input=marker + "x" * TWO_MB,
                stream=stream,
            )
        err = caught.value
        assert (err.status_code, err.code, err.param) == (400, "context_length_exceeded", "input")
        assert err.body["message"] == tokens.RESPONSES_OVERFLOW  # type: ignore[index]
        assert fake_requests(fake_provider_url, marker) == []
        refused.append(_request_id(err))
    _assert_unbilled(stack, openai_client, refused)


def test_an_exact_count_and_the_completion_cap(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    """mock-small-window's catalog names o200k_base: the refusal states tiktoken's count; a
    prompt that fits alone is refused with a ``max_tokens`` that would not, and answered
    without it."""
    marker = _marker()
    messages = _user(marker + WORD * 1200)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="mock-small-window", messages=messages)
    encodings = tokens.Encodings()
    count = tokens.text_counter(encodings, "o200k_base")
    prompt = tokens.chat_prompt_tokens({"messages": messages}, count)
    assert caught.value.body["message"] == (  # type: ignore[index]
        f"This model's maximum context length is 1000 tokens. However, your messages "
        f"resulted in {prompt} tokens. Please reduce the length of the messages."
    )
    assert fake_requests(fake_provider_url, marker) == []

    marker = _marker()
    messages = _user(marker + WORD * 300)
    prompt = tokens.chat_prompt_tokens({"messages": messages}, count)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="mock-small-window", messages=messages, max_tokens=1001 - prompt
        )
    assert f"you requested 1001 tokens ({prompt} in the messages" in caught.value.message
    assert fake_requests(fake_provider_url, marker) == []
    # Answered with a cap both the edge's count and the fake's (rougher) estimate let through.
    fits = 1000 - max(prompt, windows.prompt_tokens({"messages": messages}))
    answer = openai_client.chat.completions.create(
        model="mock-small-window", messages=messages, max_tokens=fits
    )
    assert answer.choices[0].finish_reason == "stop"
    assert len(fake_requests(fake_provider_url, marker)) == 1


def test_the_providers_own_refusal_is_the_same_400(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    """mock-wide-window's catalog window (1,000,000) lets an 8,000-character prompt through;
    the fake's mock-small-window (1000 tokens) refuses it, and that refusal is the client's,
    after one provider call (no failover to the second deployment)."""
    for stream in (False, True):
        marker = _marker()
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.chat.completions.create(
                model="mock-wide-window", messages=_user(marker + "x" * 8000), stream=stream
            )
        err = caught.value
        assert (err.status_code, err.code, err.param, err.type) == (
            400,
            "context_length_exceeded",
            "messages",
            "invalid_request_error",
        ), err.body
        assert err.body["message"].startswith(  # type: ignore[index]
            "This model's maximum context length is 1000 tokens. However, your messages "
            "resulted in "
        )
        assert len(fake_requests(fake_provider_url, marker)) == 1

    marker = _marker()
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(model="mock-wide-window", input=marker + "x" * 8000)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "input")
    assert caught.value.body["message"] == tokens.RESPONSES_OVERFLOW  # type: ignore[index]
    assert len(fake_requests(fake_provider_url, marker)) == 1


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_the_gateway_api_answers_in_its_own_shape(
    stack: Stack, http: httpx.Client, fake_provider_url: str
) -> None:
    assert stack.config.admin_token is not None
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    made = http.post(
        "/admin/projects",
        json={"name": f"cw-{_marker()}", "type": "ai_gateway"},
        headers=operator,
    )
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    key = http.post(
        f"/admin/projects/{project}/keys",
        json={"name": "k", "scopes": ["chat", "admin"]},
        headers=operator,
    )
    assert key.status_code == 201, key.text
    bearer = {"authorization": f"Bearer {key.json()['key']}"}
    for slug, model in (("narrow", "mock-small-window"), ("wide", "mock-wide-window")):
        endpoint = http.post(
            f"/admin/projects/{project}/endpoints",
            json={"slug": slug, "model": model, "system_prompt": "Be brief."},
            headers=bearer,
        )
        assert endpoint.status_code == 201, endpoint.text

    def call(slug: str, marker: str) -> dict[str, Any]:
        resp = http.post(
            f"/api/{project}/{slug}", json={"message": marker + "x" * 8000}, headers=bearer
        )
        assert resp.status_code == 400, resp.text
        body = dict(resp.json())
        assert set(body) == {"ok", "error", "code"}
        assert (body["ok"], body["code"]) == (False, "context_length_exceeded")
        assert body["error"].startswith("This model's maximum context length is 1000 tokens.")
        return body

    marker = _marker()
    call("narrow", marker)  # the edge's own count: the endpoint's system prompt included
    assert fake_requests(fake_provider_url, marker) == []
    marker = _marker()
    call("wide", marker)  # the provider's refusal, in the same shape
    assert len(fake_requests(fake_provider_url, marker)) == 1


def test_a_body_over_the_size_limit_is_still_413(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    marker = _marker()
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(
            model="mock-chat", messages=_user(marker + "x" * (5 << 20))
        )
    err = caught.value
    assert (err.status_code, err.code, err.type) == (
        413,
        "request_too_large",
        "invalid_request_error",
    )
    assert err.body["message"] == (  # type: ignore[index]
        "Request body too large: the limit is 4194304 bytes."  # GATEWAY_MAX_BODY_BYTES' default
    )
    assert fake_requests(fake_provider_url, marker) == []
