"""OpenAI's parameter ranges through the real stack and the official SDK.

Each bounded field, just below and just above its range, is an
``openai.BadRequestError`` naming the param with OpenAI's code, and the fake
provider's recorder (``helpers.fake_requests``) shows the request never
reached it; a value at each bound's edge is answered and did reach it. The
Gateway API refuses the same values in an endpoint's ``params`` when saved.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from devtools.stack import Stack
from tests.integration.helpers import fake_requests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: (field, lowest allowed, highest allowed or None, "integer" | "decimal")
CHAT = [
    ("max_tokens", 1, None, "integer"),
    ("max_completion_tokens", 1, None, "integer"),
    ("n", 1, 128, "integer"),
    ("temperature", 0, 2, "decimal"),
    ("top_p", 0, 1, "decimal"),
    ("presence_penalty", -2, 2, "decimal"),
    ("frequency_penalty", -2, 2, "decimal"),
    ("top_logprobs", 0, 20, "integer"),
]
RESPONSES = [
    ("temperature", 0, 2, "decimal"),
    ("top_p", 0, 1, "decimal"),
    ("max_output_tokens", 16, None, "integer"),
    ("top_logprobs", 0, 20, "integer"),
]
EMBEDDINGS = [("dimensions", 1, None, "integer")]

Case = tuple[str, Any, str, object]  # (field, value, expected code, the number echoed back)
Send = Callable[[str, dict[str, Any]], object]  # (marker, extra fields) -> answer


def _refused(bounds: list[tuple[str, int, int | None, str]]) -> list[Case]:
    """Values just outside each range, with the code OpenAI gives them."""
    cases: list[Case] = []
    for field, low, high, kind in bounds:
        step = 1 if kind == "integer" else 0.5
        cases.append((field, low - step, f"{kind}_below_min_value", low - step))
        if high is not None:
            cases.append((field, high + step, f"{kind}_above_max_value", high + step))
    return cases


def _edges(bounds: list[tuple[str, int, int | None, str]]) -> list[tuple[str, Any]]:
    return [(f, v) for f, low, high, _ in bounds for v in ([low] if high is None else [low, high])]


#: Edge values the gateway passes but the fake provider refuses on its own terms (it answers
#: at most 16 choices): the recorder still shows they reached it.
PROVIDER_REFUSES = {("n", "128")}


def _check(
    fake_provider_url: str, send: Send, refused: list[Case], edges: list[tuple[str, Any]]
) -> None:
    """Every refused case is a 400 naming its param that never reached the provider; every
    edge value is answered (or, for ``PROVIDER_REFUSES``, refused by the provider) and
    reached it."""
    for field, value, code, got in refused:
        marker = secrets.token_hex(6)
        with pytest.raises(openai.BadRequestError) as info:
            send(marker, {field: value})
        err = info.value
        assert (err.status_code, err.param, err.code) == (400, field, code), err.body
        assert err.type == "invalid_request_error"
        message = err.body["message"]  # type: ignore[index]
        assert message.startswith(f"Invalid '{field}': ") and f"but got {got} instead" in message
        assert fake_requests(fake_provider_url, marker) == [], (field, value)
    for field, value in edges:
        marker = secrets.token_hex(6)
        if (field, str(value)) in PROVIDER_REFUSES:
            with pytest.raises(openai.APIStatusError) as refusal:
                send(marker, {field: value})
            assert refusal.value.status_code == 400, refusal.value.body
            assert "between 1 and 16" in refusal.value.message  # the fake's words, not ours
        else:
            send(marker, {field: value})
        assert len(fake_requests(fake_provider_url, marker)) == 1, (field, value)


def test_chat_completions_bounds(openai_client: openai.OpenAI, fake_provider_url: str) -> None:
    def send(marker: str, extra: dict[str, Any]) -> object:
        if "top_logprobs" in extra:
            extra = {**extra, "logprobs": True}
        return openai_client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": f"hi {marker}"}], **extra
        )

    refused = [
        *_refused(CHAT),
        ("logit_bias", {"50256": -101}, "decimal_below_min_value", -101),
        ("logit_bias", {"1": 0, "50256": 100.5}, "decimal_above_max_value", 100.5),
    ]
    edges = [*_edges(CHAT), ("logit_bias", {"0": -100, "50256": 100})]
    _check(fake_provider_url, send, refused, edges)


def test_the_issue_example_word_for_word(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=-5
        )
    assert info.value.body == {
        "message": "Invalid 'max_tokens': integer below minimum value. "
        "Expected a value >= 1, but got -5 instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "integer_below_min_value",
    }


def test_a_wrong_type_is_invalid_type(openai_client: openai.OpenAI, fake_provider_url: str) -> None:
    marker = secrets.token_hex(6)
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(
            model="mock-chat",
            messages=[{"role": "user", "content": f"hi {marker}"}],
            max_tokens="abc",  # type: ignore[arg-type]
        )
    assert (info.value.param, info.value.code) == ("max_tokens", "invalid_type")
    assert info.value.body["message"] == (  # type: ignore[index]
        "Invalid type for 'max_tokens': expected an integer, but got a string instead."
    )
    assert fake_requests(fake_provider_url, marker) == []


def test_responses_bounds(openai_client: openai.OpenAI, fake_provider_url: str) -> None:
    def send(marker: str, extra: dict[str, Any]) -> object:
        return openai_client.responses.create(
            model="mock-reasoning", input=f"hi {marker}", store=False, **extra
        )

    _check(fake_provider_url, send, _refused(RESPONSES), _edges(RESPONSES))


def test_embeddings_bounds(openai_client: openai.OpenAI, fake_provider_url: str) -> None:
    def send(marker: str, extra: dict[str, Any]) -> object:
        return openai_client.embeddings.create(model="mock-embed", input=f"hi {marker}", **extra)

    _check(fake_provider_url, send, _refused(EMBEDDINGS), _edges(EMBEDDINGS))


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_endpoint_params_out_of_range_are_refused_when_saved(
    stack: Stack, http: httpx.Client
) -> None:
    assert stack.config.admin_token is not None
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    project = http.post(
        "/admin/projects", json={"name": f"bounds-{secrets.token_hex(4)}"}, headers=operator
    )
    assert project.status_code == 201, project.text
    path = f"/admin/projects/{project.json()['id']}/endpoints"
    for params, code in (
        ({"temperature": 2.5}, "decimal_above_max_value"),
        ({"top_p": -0.5}, "decimal_below_min_value"),
        ({"presence_penalty": 3}, "decimal_above_max_value"),
        ({"max_tokens": 0}, "integer_below_min_value"),
        ({"max_completion_tokens": "9"}, "invalid_type"),
    ):
        (field,) = params
        resp = http.post(
            path, json={"slug": "s", "model": "mock-chat", "params": params}, headers=operator
        )
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["ok"] is False and body["code"] == code, body
        assert f"'params.{field}'" in body["error"]
    assert http.get(path, headers=operator).json()["data"] == []
    edges = {"temperature": 2, "top_p": 0, "frequency_penalty": -2, "max_tokens": 1}
    resp = http.post(
        path, json={"slug": "s", "model": "mock-chat", "params": edges}, headers=operator
    )
    assert resp.status_code == 201, resp.text
    patched = http.patch(f"{path}/s", json={"params": {"temperature": -1}}, headers=operator)
    assert patched.status_code == 400 and patched.json()["code"] == "decimal_below_min_value"
    assert http.get(f"{path}/s", headers=operator).json()["params"] == edges
