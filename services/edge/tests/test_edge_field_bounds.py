"""OpenAI's parameter ranges at the edge: out of range is OpenAI's 400 naming the param, the
router never sees it; a value at a bound's edge passes byte for byte.

Covers ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (the
ranges are field constraints of ``gateway_common.openai``, reported by
``edge.api.errors.validation_error``) and the Gateway API's endpoint
``params``, refused at save time in seed 001's ``{ok, error, code}`` shape.
"""

from __future__ import annotations

import orjson
import pytest

from edge import EdgeSettings

from .support import OPERATOR, Edge, RouterServer, admin_settings, auth

pytestmark = pytest.mark.timeout(60)

CHAT = ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
RESPONSES = ("/v1/responses", {"model": "m", "input": "hi", "store": False})
EMBEDDINGS = ("/v1/embeddings", {"model": "e", "input": "hi"})

#: (surface, field, lowest allowed, highest allowed or None, "integer" | "decimal")
BOUNDS = [
    (CHAT, "max_tokens", 1, None, "integer"),
    (CHAT, "max_completion_tokens", 1, None, "integer"),
    (CHAT, "n", 1, 128, "integer"),
    (CHAT, "temperature", 0, 2, "decimal"),
    (CHAT, "top_p", 0, 1, "decimal"),
    (CHAT, "presence_penalty", -2, 2, "decimal"),
    (CHAT, "frequency_penalty", -2, 2, "decimal"),
    (CHAT, "top_logprobs", 0, 20, "integer"),
    (RESPONSES, "temperature", 0, 2, "decimal"),
    (RESPONSES, "top_p", 0, 1, "decimal"),
    (RESPONSES, "max_output_tokens", 16, None, "integer"),
    (RESPONSES, "top_logprobs", 0, 20, "integer"),
    (EMBEDDINGS, "dimensions", 1, None, "integer"),
]


def _outside(low: int, high: int | None, kind: str) -> list[tuple[str, int | float, str]]:
    """Values just outside the range: (side, value, the bound as OpenAI writes it)."""
    step = 1 if kind == "integer" else 0.5
    cases: list[tuple[str, int | float, str]] = [("below", low - step, f">= {low}")]
    if high is not None:
        cases.append(("above", high + step, f"<= {high}"))
    return cases


def _expected(param: str, kind: str, side: str, bound: str, got: object) -> dict[str, str]:
    words = "below minimum value" if side == "below" else "above maximum value"
    code = f"{kind}_{'below_min_value' if side == 'below' else 'above_max_value'}"
    return {
        "message": f"Invalid '{param}': {kind} {words}. Expected a value {bound}, "
        f"but got {got} instead.",
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


REFUSED = [
    pytest.param(
        surface,
        field,
        value,
        _expected(field, kind, side, bound, value),
        id=f"{surface[0]}-{field}-{side}",
    )
    for surface, field, low, high, kind in BOUNDS
    for side, value, bound in _outside(low, high, kind)
]
EDGES = [
    pytest.param(surface, field, value, id=f"{surface[0]}-{field}-{value}")
    for surface, field, low, high, _ in BOUNDS
    for value in ([low] if high is None else [low, high])
]


async def _post(edge: Edge, surface: tuple[str, dict], extra: dict[str, object]) -> tuple:
    path, base = surface
    raw = orjson.dumps({**base, **extra})
    return await edge.client.post(path, content=raw, headers=auth()), raw


@pytest.mark.parametrize(("surface", "field", "value", "error"), REFUSED)
async def test_out_of_range_is_openais_400_and_never_reaches_the_router(
    edge: Edge, router: RouterServer, surface: tuple, field: str, value: object, error: dict
) -> None:
    resp, _ = await _post(edge, surface, {field: value})
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"error": error}
    assert not router.servicer.calls


@pytest.mark.parametrize(("surface", "field", "value"), EDGES)
async def test_a_value_at_the_edge_of_its_range_passes_unchanged(
    edge: Edge, router: RouterServer, surface: tuple, field: str, value: object
) -> None:
    resp, raw = await _post(edge, surface, {field: value})
    assert resp.status_code == 200, resp.text
    assert router.servicer.calls[-1][0].body == raw


async def test_the_issue_example_word_for_word(edge: Edge, router: RouterServer) -> None:
    resp, _ = await _post(edge, CHAT, {"max_tokens": -5})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": {
            "message": "Invalid 'max_tokens': integer below minimum value. "
            "Expected a value >= 1, but got -5 instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "integer_below_min_value",
        }
    }
    assert not router.servicer.calls


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        (
            {"max_tokens": "abc"},
            "max_tokens",
            "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        ),
        (
            {"n": 1.5},
            "n",
            "Invalid type for 'n': expected an integer, but got a decimal instead.",
        ),
        (
            {"temperature": "0.5"},
            "temperature",
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        ),
        (
            {"top_logprobs": True},
            "top_logprobs",
            "Invalid type for 'top_logprobs': expected an integer, but got a boolean instead.",
        ),
        (
            {"logit_bias": {"50256": "x"}},
            "logit_bias",
            "Invalid type for 'logit_bias': expected a decimal, but got a string instead.",
        ),
        (
            {"stop": 5},
            "stop",
            "Invalid type for 'stop': expected a string or an array, but got an integer instead.",
        ),
    ],
)
async def test_wrong_types_are_invalid_type_in_openais_words(
    edge: Edge, router: RouterServer, extra: dict, param: str, message: str
) -> None:
    resp, _ = await _post(edge, CHAT, extra)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"], error["message"]) == (param, "invalid_type", message)
    assert not router.servicer.calls


@pytest.mark.parametrize(
    ("bias", "code", "message"),
    [
        (
            {"50256": -100.5},
            "decimal_below_min_value",
            "Invalid 'logit_bias': decimal below minimum value. "
            "Expected a value >= -100, but got -100.5 instead.",
        ),
        (
            {"1": 5, "50256": 101},
            "decimal_above_max_value",
            "Invalid 'logit_bias': decimal above maximum value. "
            "Expected a value <= 100, but got 101 instead.",
        ),
        (
            {"hello": 1},
            "invalid_value",
            "Invalid key in 'logit_bias': hello. You should only be submitting non-negative "
            "integers.",
        ),
        (
            {"-3": 1},
            "invalid_value",
            "Invalid key in 'logit_bias': -3. You should only be submitting non-negative integers.",
        ),
    ],
)
async def test_logit_bias_values_and_keys(
    edge: Edge, router: RouterServer, bias: dict, code: str, message: str
) -> None:
    resp, _ = await _post(edge, CHAT, {"logit_bias": bias})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"], error["message"]) == ("logit_bias", code, message)
    assert not router.servicer.calls


async def test_logit_bias_at_its_edges_and_unknown_fields_pass(
    edge: Edge, router: RouterServer
) -> None:
    extra = {
        "logit_bias": {"0": -100, "50256": 100, "13": 0.5},
        "x_not_yet_in_openai": {"temperature": 99},
        "reasoning_effort": "low",
    }
    resp, raw = await _post(edge, CHAT, extra)
    assert resp.status_code == 200, resp.text
    assert router.servicer.calls[-1][0].body == raw


async def test_a_streamed_request_is_checked_before_any_event(
    edge: Edge, router: RouterServer
) -> None:
    resp, _ = await _post(edge, CHAT, {"stream": True, "temperature": 2.5})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["code"] == "decimal_above_max_value"
    assert not router.servicer.calls


class TestEndpointParams:
    """The Gateway API: endpoint ``params`` out of range are refused when saved."""

    @pytest.fixture
    def settings(self, nats_url: str, db_url: str, router: RouterServer) -> EdgeSettings:
        return admin_settings(nats_url, db_url, router)

    @staticmethod
    def _path(edge: Edge) -> str:
        pid = edge.app.state.edge.keys.authenticate(auth()["authorization"]).project_id
        return f"/admin/projects/{pid}/endpoints"

    @pytest.mark.parametrize(
        ("params", "code", "message"),
        [
            (
                {"temperature": 2.5},
                "decimal_above_max_value",
                "Invalid 'params.temperature': decimal above maximum value. "
                "Expected a value <= 2, but got 2.5 instead.",
            ),
            (
                {"top_p": -0.5},
                "decimal_below_min_value",
                "Invalid 'params.top_p': decimal below minimum value. "
                "Expected a value >= 0, but got -0.5 instead.",
            ),
            (
                {"presence_penalty": -3},
                "decimal_below_min_value",
                "Invalid 'params.presence_penalty': decimal below minimum value. "
                "Expected a value >= -2, but got -3 instead.",
            ),
            (
                {"frequency_penalty": 2.5},
                "decimal_above_max_value",
                "Invalid 'params.frequency_penalty': decimal above maximum value. "
                "Expected a value <= 2, but got 2.5 instead.",
            ),
            (
                {"max_tokens": 0},
                "integer_below_min_value",
                "Invalid 'params.max_tokens': integer below minimum value. "
                "Expected a value >= 1, but got 0 instead.",
            ),
            (
                {"max_completion_tokens": -5},
                "integer_below_min_value",
                "Invalid 'params.max_completion_tokens': integer below minimum value. "
                "Expected a value >= 1, but got -5 instead.",
            ),
            (
                {"max_tokens": "64"},
                "invalid_type",
                "Invalid type for 'params.max_tokens': expected an integer, "
                "but got a string instead.",
            ),
        ],
    )
    async def test_create_and_update_refuse_out_of_range_params(
        self, edge: Edge, params: dict, code: str, message: str
    ) -> None:
        path = self._path(edge)
        created = await edge.client.post(
            path, json={"slug": "s", "model": "mock-chat", "params": params}, headers=OPERATOR
        )
        assert created.status_code == 400, created.text
        assert created.json() == {"ok": False, "error": message, "code": code}
        listed = await edge.client.get(path, headers=OPERATOR)
        assert listed.json()["data"] == []

        ok = await edge.client.post(
            path, json={"slug": "s", "model": "mock-chat"}, headers=OPERATOR
        )
        assert ok.status_code == 201, ok.text
        patched = await edge.client.patch(f"{path}/s", json={"params": params}, headers=OPERATOR)
        assert patched.status_code == 400, patched.text
        assert patched.json() == {"ok": False, "error": message, "code": code}
        shown = await edge.client.get(f"{path}/s", headers=OPERATOR)
        assert shown.json()["params"] == {}

    async def test_params_at_the_edges_of_their_ranges_are_saved(self, edge: Edge) -> None:
        path = self._path(edge)
        for slug, params in (
            ("low", {"temperature": 0, "top_p": 0, "presence_penalty": -2, "max_tokens": 1}),
            ("high", {"temperature": 2, "top_p": 1, "frequency_penalty": 2}),
        ):
            resp = await edge.client.post(
                path, json={"slug": slug, "model": "mock-chat", "params": params}, headers=OPERATOR
            )
            assert resp.status_code == 201, resp.text
            assert resp.json()["params"] == params
