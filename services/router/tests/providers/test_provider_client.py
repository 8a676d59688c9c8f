"""``ProviderClient`` builds the requests ``httpx.AsyncClient`` built, without its per-call work.

The adapters used to send through ``httpx.AsyncClient``; these tests pin that
the leaner client puts the same method, URL, headers, body and timeouts on
the wire, for every way an adapter builds a request.
"""

from __future__ import annotations

import time

import httpx
import pytest

from gateway_common.errors import ProviderTimeout
from router.providers._client import ProviderClient, request_timeout

_TIMEOUT = httpx.Timeout(30.0, connect=2.0)
_DEFAULTS = {"content-type": "application/json", "authorization": "Bearer sk-configured"}


def _pair(base_url: str, params: dict[str, str] | None) -> tuple[ProviderClient, httpx.AsyncClient]:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    ours = ProviderClient(base_url, _DEFAULTS, params=params, timeout=_TIMEOUT, transport=transport)
    theirs = httpx.AsyncClient(
        base_url=base_url, headers=_DEFAULTS, params=params, timeout=_TIMEOUT, transport=transport
    )
    return ours, theirs


@pytest.mark.parametrize(
    ("base_url", "params", "path", "call_params", "headers"),
    [
        ("https://api.openai.com/v1", None, "chat/completions", None, None),
        ("https://p.test/v1/", None, "/embeddings", None, {"authorization": "Bearer sk-own"}),
        (
            "https://res.openai.azure.com",
            {"api-version": "2024-10-21"},
            "openai/deployments/gpt%2F4o/chat/completions",
            None,
            {"api-key": "k"},
        ),
        (
            "https://g.test/v1beta",
            None,
            "models/gemini-2.0:streamGenerateContent",
            {"alt": "sse"},
            None,
        ),
        ("https://a.test/v1", None, "models", {"limit": 1000}, None),
        (
            "http://127.0.0.1:8090/fault/status=500,retry_after=1/v1",
            None,
            "chat/completions",
            None,
            None,
        ),
    ],
)
def test_requests_match_what_httpx_async_client_built(
    base_url: str,
    params: dict[str, str] | None,
    path: str,
    call_params: dict[str, str | int] | None,
    headers: dict[str, str] | None,
) -> None:
    ours, theirs = _pair(base_url, params)
    for _ in range(2):  # the second time from the URL cache
        mine = ours.request(
            "POST", path, deadline=None, content=b"{}", headers=headers, params=call_params
        )
        reference = theirs.build_request(
            "POST", path, content=b"{}", headers=headers, params=call_params
        )
        assert mine.method == reference.method
        assert str(mine.url) == str(reference.url)
        assert mine.content == reference.content
        assert mine.extensions == reference.extensions
        expected = dict(reference.headers)
        # Deliberate: no optional decoders advertised (see router.providers._client).
        expected["accept-encoding"] = "gzip, deflate"
        assert dict(mine.headers) == expected


def test_a_call_header_does_not_leak_into_the_next_call() -> None:
    ours, _ = _pair("https://p.test/v1", None)
    ours.request("POST", "chat/completions", deadline=None, headers={"authorization": "Bearer x"})
    plain = ours.request("POST", "chat/completions", deadline=None)
    assert plain.headers["authorization"] == "Bearer sk-configured"


def test_the_deadline_narrows_every_timeout() -> None:
    ours, _ = _pair("https://p.test/v1", None)
    request = ours.request("POST", "chat/completions", deadline=time.monotonic() + 0.5)
    assert all(0 < value <= 0.5 for value in request.extensions["timeout"].values())
    with pytest.raises(ProviderTimeout):
        request_timeout(_TIMEOUT, time.monotonic() - 1)


async def test_send_reads_the_body_unless_streaming() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, stream=httpx.ByteStream(b'{"ok": true}'))
    )
    client = ProviderClient(
        "https://p.test/v1", _DEFAULTS, params=None, timeout=_TIMEOUT, transport=transport
    )
    request = client.request("POST", "chat/completions", deadline=None, content=b"{}")
    response = await client.send(request)
    assert response.content == b'{"ok": true}'
    assert response.request is request
    streamed = await client.send(request, stream=True)
    assert [part async for part in streamed.aiter_bytes()] == [b'{"ok": true}']
    await streamed.aclose()
    await client.aclose()
