"""Unit tests of the OpenAI-compatible adapter's pure parts (the conformance suite covers I/O)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from gateway_common.catalog import ProviderEntry
from gateway_common.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from router.providers import openai_compat
from router.providers._http import retry_after
from router.providers.base import ProviderRequest, Usage
from router.providers.openai_compat import _map_error, parse_chunk, to_provider


def test_to_provider_rewrites_model_and_never_mutates_the_body() -> None:
    body = {"model": "public", "stream_options": {"include_usage": False, "x": 1}, "n": 2}
    req = ProviderRequest("chat.completions", body, provider_model="upstream")
    streamed = orjson.loads(to_provider(req, stream=True))
    assert streamed == {
        "model": "upstream",
        "stream": True,
        "stream_options": {"include_usage": True, "x": 1},
        "n": 2,
    }
    assert orjson.loads(to_provider(req, stream=False)) == {"model": "upstream", "n": 2}
    assert body == {"model": "public", "stream_options": {"include_usage": False, "x": 1}, "n": 2}


def test_parse_chunk_passes_bytes_through() -> None:
    data = b'{"choices":[{"delta":{"content":"hi"},"finish_reason":null}],"usage":null}'
    chunk = parse_chunk(data, "p", forward_usage=True)
    assert chunk.data is data and chunk.usage is None and not chunk.final
    plain = b'{"choices":[{"delta":{"content":"hi"}}]}'
    assert parse_chunk(plain, "p", forward_usage=False).data is plain


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b'{"id":"c","choices":[{"delta":{}}],"usage":null}',
            b'{"id":"c","choices":[{"delta":{}}]}',
        ),
        (
            b'{"id": "c", "usage": null, "choices": [{"delta": {}}]}',
            b'{"id":"c","choices":[{"delta":{}}]}',
        ),
    ],
)
def test_parse_chunk_drops_a_null_usage_the_client_did_not_ask_for(
    data: bytes, expected: bytes
) -> None:
    """OpenAI's chunks carry ``"usage": null`` only for ``include_usage``."""
    assert parse_chunk(data, "p", forward_usage=False).data == expected


def test_parse_chunk_marks_final_chunks() -> None:
    finish = b'{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{},"finish_reason":"stop"}]}'
    usage = b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    assert parse_chunk(finish, "p", forward_usage=False).final
    assert parse_chunk(usage, "p", forward_usage=True).final
    content = (
        b'{"choices":[{"delta":{"content":"a"},"finish_reason":null}],"usage":{"prompt_tokens":1}}'
    )
    early = parse_chunk(content, "p", forward_usage=True)  # vLLM's continuous usage stats
    assert early.usage is not None and not early.final


def test_parse_chunk_drops_a_chunk_with_no_choices_and_no_usage() -> None:
    """Azure's first chunk (``prompt_filter_results``) is one OpenAI never sends."""
    filters = b'{"choices":[],"id":"","prompt_filter_results":[{"prompt_index":0}]}'
    for forward_usage in (False, True):
        chunk = parse_chunk(filters, "p", forward_usage=forward_usage)
        assert chunk.data is None and chunk.usage is None


def test_parse_chunk_reads_reasoning_and_responses_usage() -> None:
    data = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":3}}}'
    chunk = parse_chunk(data, "p", forward_usage=False)
    assert chunk.data is None
    assert chunk.usage == Usage(
        prompt_tokens=3, completion_tokens=9, total_tokens=12, reasoning_tokens=3
    )
    responses = b'{"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":2},"output_tokens":4,"total_tokens":9}}'
    assert openai_compat.from_provider(responses, "p").usage == Usage(5, 4, 9, 2, 0)


@pytest.mark.parametrize("data", [b"not json", b"[1,2]", b'{"error":{"message":"boom"}}'])
def test_parse_chunk_refuses_garbage_and_errors(data: bytes) -> None:
    with pytest.raises(ProviderUnavailable):
        parse_chunk(data, "p", forward_usage=True)


def _response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_retry_after_forms() -> None:
    assert retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after(httpx.Headers({})) is None
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(httpx.Headers({"retry-after": later})) or 0) <= 30


@pytest.mark.parametrize(
    ("status", "error", "http_status"),
    [
        (401, ProviderRejected, 502),
        (403, ProviderRejected, 502),
        (404, ProviderRejected, 404),
        (408, ProviderTimeout, 504),
        (413, ProviderRejected, 413),
        (422, ProviderRejected, 422),
        (503, ProviderUnavailable, 502),
    ],
)
def test_map_error_statuses(status: int, error: type, http_status: int) -> None:
    body = b'{"error":{"message":"Incorrect API key provided: sk-abc***xyz"}}'
    err = _map_error(_response(status, body), "p")
    assert type(err) is error
    assert err.http_status == http_status
    if status in (401, 403):
        assert "sk-" not in err.message  # the provider's words about keys stay out


def test_map_error_without_a_json_body() -> None:
    err = _map_error(_response(400, b"<html>bad gateway</html>"), "p")
    assert err.message == "Provider `p` answered 400" and err.http_status == 400


@pytest.mark.timeout(5)
async def test_deadline_caps_the_timeouts_and_a_passed_one_refuses_to_call() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"choices": []})

    entry = ProviderEntry(kind="openai", base_url="https://p.test/v1", read_timeout_s=60)
    adapter = openai_compat.build("p", entry, None, transport=httpx.MockTransport(handler))
    req = ProviderRequest("chat.completions", {}, provider_model="m")
    try:
        await adapter.complete(req, deadline=time.monotonic() + 2)
        assert seen[0]["read"] <= 2 and seen[0]["connect"] <= 2
        with pytest.raises(ProviderTimeout):
            await adapter.complete(req, deadline=time.monotonic() - 0.1)
        assert len(seen) == 1
    finally:
        await adapter.aclose()
