"""What the harness needs of a measured system, and a readiness wait for the ones it spawns.

A target is a context manager: entering it starts every process it needs and
returns once the target answers; leaving it stops them all (also on Ctrl-C,
since ``with`` unwinds on ``KeyboardInterrupt``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import httpx
import orjson

from devtools.procs import Child

from .layout import BenchLayout
from .load import chat_body

__all__ = ["Target", "TargetError", "check_target", "wait_until_ok"]

_POLL_S = 0.2


class TargetError(RuntimeError):
    """A target could not start or answered wrongly; the message carries its log tail."""


class Target(Protocol):
    """A system under load."""

    name: str
    """Row label in the report: ``direct``, ``litellm``, ``switchyard``."""

    def url(self, *, stream: bool) -> str:
        """Where to POST a chat request (streamed or not)."""
        ...

    def model(self, *, stream: bool) -> str:
        """The model name to put in that request."""
        ...

    def process_roots(self) -> Mapping[str, int]:
        """``{name: pid}`` of the processes whose trees make up the target (load generator excluded)."""
        ...


def wait_until_ok(url: str, child: Child, *, timeout_s: float, what: str) -> None:
    """Poll ``GET url`` until it answers 200; raise ``TargetError`` if ``child`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not _answers_ok(url):
        if child.returncode is not None:
            raise TargetError(f"{what} exited with {child.returncode}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise TargetError(f"{what} not ready after {timeout_s:.0f} s:\n{child.tail()}")
        time.sleep(_POLL_S)


def _answers_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def check_target(target: Target, *, api_key: str, layout: BenchLayout) -> None:
    """POST one chat and one streamed chat; raise ``TargetError`` unless both carry the
    upstream's reply text (``bench/upstream/chat.json``) and the stream ends with ``[DONE]``.

    wrk only sees status codes, so this is what shows that a 200 is a real answer.
    """
    expected = orjson.loads(layout.input("upstream/chat.json").read_bytes())
    text = expected["choices"][0]["message"]["content"]
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    with httpx.Client(timeout=30.0, headers=headers) as client:
        for stream in (False, True):
            body = chat_body(target.model(stream=stream), stream=stream)
            reply = client.post(target.url(stream=stream), content=body)
            what = f"{target.name} ({'stream' if stream else 'chat'})"
            if reply.status_code != 200:
                raise TargetError(f"{what} answered {reply.status_code}: {reply.text[:500]}")
            got = _stream_text(reply.text, what) if stream else _chat_text(reply.content)
            if got != text:
                raise TargetError(f"{what} replied {got!r}, not {text!r}")


def _chat_text(body: bytes) -> str:
    return str(orjson.loads(body)["choices"][0]["message"]["content"])


def _stream_text(body: str, what: str) -> str:
    events = [
        line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")
    ]
    if not events or events[-1] != "[DONE]":
        raise TargetError(f"{what}: the stream did not end with [DONE]:\n{body[-1000:]}")
    return "".join(
        choice.get("delta", {}).get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event).get("choices", [])
    )
