"""Deterministic replies: pure functions from a request body to OpenAI-shaped payloads.

The reply to a chat request is ``f"{last_user_text} [{digest}]"`` (or a refusal
or tool calls: see ``answers``), in ``n`` identical choices, where ``digest`` is
the first 12 hex digits of the SHA-256 of the body (without ``stream`` and
``stream_options``) serialised by orjson with sorted keys. A test that knows what
it sent can therefore compute exactly what the provider must have answered, and
a test that sees the reply knows exactly which body reached the provider.

Token counts are word counts: ``prompt_tokens`` over the text of every message,
``completion_tokens`` over the reply times ``n``; ``mock-reasoning`` adds
``reasoning_tokens`` equal to ``prompt_tokens`` (counted in ``completion_tokens``
too, as OpenAI does).
Embedding vectors are derived from SHA-256 of each input and L2-normalised.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

import orjson

from fakeprovider import answers
from fakeprovider.answers import Answer

__all__ = [
    "CREATED",
    "MODELS",
    "chat_chunks",
    "chat_completion",
    "digest",
    "embeddings",
    "error_body",
    "model_list",
]

#: The fixed ``created`` timestamp of every object the fake returns.
CREATED = 1700000000
#: The models the fake lists; any other model name is served like ``mock-chat``.
MODELS = ("mock-chat", "mock-reasoning", "mock-embed")
REASONING_MODEL = "mock-reasoning"
_DEFAULT_DIMENSIONS = 8
_MAX_CHOICES = 16
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def digest(body: dict[str, Any]) -> str:
    """12 hex digits identifying ``body`` regardless of streaming options."""
    stripped = {k: v for k, v in body.items() if k != "stream" and k != "stream_options"}
    return hashlib.sha256(orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def _text(content: Any) -> str:
    """The text of a message ``content``: the string, or its text parts joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def _choices(body: dict[str, Any]) -> int:
    """``n``: how many choices to answer with; raise ValueError when it is not 1..16."""
    n = body.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= _MAX_CHOICES:
        raise ValueError(f"n must be an integer between 1 and {_MAX_CHOICES}")
    return n


def _reply(body: dict[str, Any]) -> tuple[str, Answer, int, dict[str, Any]]:
    """Return ``(digest, answer, n, usage)`` for a chat request body.

    Raises ValueError for a value the fake cannot honour (``n``).
    """
    n = _choices(body)
    messages = body.get("messages") or []
    prompt_tokens = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = _text(message.get("content"))
        prompt_tokens += len(text.split())
        if message.get("role") == "user":
            last_user = text
    key = digest(body)
    said = answers.answer(body, last_user=last_user, digest=key)
    completion_tokens = said.tokens * n
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens}
    if body.get("model") == REASONING_MODEL:
        completion_tokens += prompt_tokens
        usage["completion_tokens"] = completion_tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": prompt_tokens}
    else:
        usage["completion_tokens"] = completion_tokens
    usage["total_tokens"] = prompt_tokens + completion_tokens
    return key, said, n, usage


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` answer to ``body``; ValueError if invalid."""
    key, said, n, usage = _reply(body)
    choice = {"message": said.message(), "logprobs": None, "finish_reason": said.finish_reason}
    return {
        "id": "chatcmpl-" + key,
        "object": "chat.completion",
        "created": CREATED,
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
        "choices": [{"index": index, **choice} for index in range(n)],
        "usage": usage,
    }


def chat_chunks(body: dict[str, Any]) -> list[bytes]:
    """The ``chat.completion.chunk`` objects of the streamed answer, serialised, in order.

    Per choice: the answer's deltas (``answers.Answer.deltas``: a role chunk, then
    one chunk per word, or per tool-call head and argument piece), then a chunk
    with an empty delta and the finish reason. With ``n`` > 1 the choices are
    interleaved step by step, as OpenAI sends them. Last, a usage-only chunk
    (``choices: []``) when ``stream_options.include_usage``. The caller frames
    them as SSE and appends ``data: [DONE]``. Raises ValueError if invalid.
    """
    key, said, n, usage = _reply(body)
    head = {
        "id": "chatcmpl-" + key,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
    }

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return orjson.dumps({**head, "choices": [choice]})

    steps = [*said.deltas(), None]
    out = [
        chunk(index, delta) if delta is not None else chunk(index, {}, said.finish_reason)
        for delta in steps
        for index in range(n)
    ]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        out.append(orjson.dumps({**head, "choices": [], "usage": usage}))
    return out


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` float32 values derived from SHA-256 of ``text``."""
    raw = bytearray()
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [(u / 0xFFFFFFFF) * 2.0 - 1.0 for u in struct.unpack_from(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so the float and base64 encodings carry the same numbers.
    return list(
        struct.unpack(
            f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))
        )
    )


def _inputs(raw: Any) -> list[tuple[str, int]]:
    """Normalise ``input`` to ``(hash key, token count)`` per item; raise ValueError if invalid."""
    if isinstance(raw, str):
        return [(raw, len(raw.split()))]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        return [(orjson.dumps(raw).decode(), len(raw))]
    if isinstance(raw, list) and raw:
        items: list[tuple[str, int]] = []
        for item in raw:
            if isinstance(item, str):
                items.append((item, len(item.split())))
            elif isinstance(item, list) and all(isinstance(t, int) for t in item):
                items.append((orjson.dumps(item).decode(), len(item)))
            else:
                raise ValueError("input items must be strings or token arrays")
        return items
    raise ValueError("input must be a non-empty string, list of strings, or token array(s)")


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """The ``/v1/embeddings`` answer; raise ValueError for an invalid request."""
    dimensions = body.get("dimensions", _DEFAULT_DIMENSIONS)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 0 < dimensions <= 8192
    ):
        raise ValueError("dimensions must be an integer between 1 and 8192")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ValueError("encoding_format must be 'float' or 'base64'")
    data = []
    tokens = 0
    for index, (text, count) in enumerate(_inputs(body.get("input"))):
        tokens += count
        vector = _vector(text, dimensions)
        embedding: list[float] | str = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_list() -> dict[str, Any]:
    """The ``GET /v1/models`` answer."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "fakeprovider"}
            for name in MODELS
        ],
    }


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error object for ``status``."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
