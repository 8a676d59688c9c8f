"""Hostile request bodies and headers (issue 19, d10): a 4xx in OpenAI's shape, never a 5xx.

In process (the edge app behind httpx's ASGI transport); the over-the-socket forms
(10 MiB and chunked bodies on a real server, slow-loris) are not covered here.
"""

from __future__ import annotations

import pytest

from edge.api import nul
from gateway_common.errors import InvalidRequest

from .support import OPERATOR, Edge, auth

_MSG = b'"messages":[{"role":"user","content":"hi"}]'


def _openai_error(resp_json: object) -> bool:
    if not isinstance(resp_json, dict) or set(resp_json) != {"error"}:
        return False
    error = resp_json["error"]
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model":"mock-chat",' + _MSG[:-3] + b'\xff\xfe"}]}', id="invalid-utf8"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-array"),
        pytest.param(
            b'{"model":"mock-chat",'
            + _MSG
            + b',"metadata":'
            + b'{"a":' * 3000
            + b"1"
            + b"}" * 3001,
            id="deep-object",
        ),
        pytest.param(b'{"model":"mock-chat",' + _MSG + b',"n":1000000000000}', id="huge-n"),
        pytest.param(b'{"model":"mock-chat",' + _MSG + b',"max_tokens":-5}', id="negative-max"),
        pytest.param(
            b'{"model":"mock-chat",' + _MSG + b',"max_tokens":' + b"9" * 400 + b"}",
            id="huge-max",
        ),
    ],
)
async def test_hostile_body_is_a_typed_4xx(edge: Edge, body: bytes) -> None:
    resp = await edge.client.post("/v1/chat/completions", content=body, headers=auth())
    assert 400 <= resp.status_code < 500, resp.text[:300]
    assert _openai_error(resp.json()), resp.text[:300]


@pytest.mark.parametrize(
    "value",
    [
        "sk-x\tx-admin: 1",
        "sk-" + "x" * 20_000,
        "sk-\u00e9\u00ff".encode("latin-1"),
        "x-admin: 1; sk-",
    ],
)
async def test_hostile_provider_key_is_never_a_5xx(edge: Edge, value: str | bytes) -> None:
    headers = {**auth(), "x-provider-key": value}
    body = b'{"model":"mock-chat",' + _MSG + b"}"
    resp = await edge.client.post("/v1/chat/completions", content=body, headers=headers)
    assert resp.status_code < 500, resp.text[:300]
    if resp.status_code >= 400:
        assert _openai_error(resp.json()), resp.text[:300]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    assert text not in resp.text  # the credential is never echoed


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", b'{"model":"mock-chat","input":"a\\u0000b"}'),
        (
            "/v1/chat/completions",
            b'{"model":"mock-chat","messages":[{"role":"user","content":"\\u0000"}]}',
        ),
        (
            "/v1/chat/completions",
            b'{"model":"mock-chat",' + _MSG + b',"metadata":{"k\\u0000":"v"}}',
        ),
    ],
)
async def test_a_nul_character_in_a_string_is_a_400_not_a_failed_write(
    edge: Edge, path: str, body: bytes
) -> None:
    """d10 on PostgreSQL found these answered 500 (a stored response cannot hold NUL)."""
    resp = await edge.client.post(path, content=body, headers=auth())
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["code"] == "invalid_value"
    assert "NUL" in resp.json()["error"]["message"]


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(edge: Edge) -> None:
    content = b'{"model":"mock-chat","messages":[{"role":"user","content":"\\\\u0000"}]}'
    resp = await edge.client.post("/v1/chat/completions", content=content, headers=auth())
    assert "NUL" not in resp.text, resp.text[:300]


async def test_a_nul_in_a_collection_name_is_a_400(edge: Edge) -> None:
    """Refused by the body check of every route (``api.nul``), before the field's validator."""
    resp = await edge.client.post("/v1/collections", json={"name": "a\u0000b"}, headers=auth())
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["code"] == "invalid_value"


async def test_a_nul_in_an_admin_body_is_a_400_in_the_ok_shape(edge: Edge) -> None:
    """d10 on PostgreSQL: ``POST /admin/projects`` with NUL in ``name`` was a 5xx."""
    for body in (b'{"name":"a\\u0000b","type":"ai_gateway"}', b'{"name":"ok","k\\u0000":1}'):
        resp = await edge.client.post(
            "/admin/projects",
            content=body,
            headers={**OPERATOR, "content-type": "application/json"},
        )
        assert resp.status_code == 400, resp.text[:300]
        assert resp.json() == {"ok": False, "error": nul.MESSAGE, "code": "invalid_value"}


async def test_a_nul_on_messages_is_a_400_in_anthropic_shape(edge: Edge) -> None:
    content = (
        b'{"model":"mock-chat","max_tokens":5,"messages":[{"role":"user","content":"\\u0000"}]}'
    )
    resp = await edge.client.post("/v1/messages", content=content, headers=auth())
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["type"] == "error"
    assert resp.json()["error"] == {"type": "invalid_request_error", "message": nul.MESSAGE}


def test_refuse_nul_reads_keys_and_values_but_not_an_escaped_backslash() -> None:
    for body in (b'{"a":"\\u0000"}', b'{"\\u0000":1}', b'[[{"x":["\\u0000"]}]]'):
        with pytest.raises(InvalidRequest):
            nul.refuse_nul(body)
    nul.refuse_nul(b'{"a":"\\\\u0000"}')  # a backslash, then the text u0000
    nul.refuse_nul(b'{"a":"\\u0000')  # does not parse: left to the route's parser


@pytest.mark.parametrize("model", ["mock-chat", "0"])
async def test_a_huge_max_tokens_on_messages_is_a_typed_4xx(edge: Edge, model: str) -> None:
    """d10 found ``/v1/messages`` answering 500 for ``max_tokens`` beyond 64 bits."""
    body = {
        "model": model,
        "max_tokens": 372537429642964304581105811456,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = await edge.client.post("/v1/messages", json=body, headers=auth())
    assert 400 <= resp.status_code < 500, resp.text[:300]
    assert resp.json()["type"] == "error", resp.text[:300]


async def test_a_bug_on_messages_is_anthropics_api_error(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure nobody raised on purpose still answers in the shape of the API called."""

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr("edge.api.routes.messages.to_chat", broken)
    body = {"model": "mock-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    resp = await edge.client.post("/v1/messages", json=body, headers=auth())
    assert resp.status_code == 500
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "api_error"
    assert "a bug" not in resp.text
