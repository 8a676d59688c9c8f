"""What the integration tests compute on their own, independent of the code under test."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


def provider_digest(body: Mapping[str, Any]) -> str:
    """The fake provider's digest of a request body, from its documented definition."""
    canonical = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    users = [m for m in messages if m["role"] == "user"]
    return str(users[-1]["content"]) if users else ""


def expected_reply(body: Mapping[str, Any]) -> str:
    """The reply the fake provider gives for ``body``: last user text plus the digest."""
    return f"{last_user_text(body['messages'])} [{provider_digest(body)}]"


def prompt_words(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(len(str(m["content"]).split()) for m in messages)


def poll(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sse_data(lines: Iterable[str]) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]
