"""What the integration tests compute on their own, independent of the code under test,
one process helper: ``extra_edge``, another edge replica joining a running stack, and
``Burst``: concurrent calls timed, to bound budget admissions on a machine of any speed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.testing import free_port, service_process

T = TypeVar("T")

#: How late ``budget-slow`` answers (``fake-slow``: ``delay_ms=4000`` in catalog.yaml).
SLOW_ANSWER_S = 4.0


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


def fake_requests(fake_provider_url: str, marker: str) -> list[dict[str, Any]]:
    """The fake provider's recorded requests whose body contains ``marker``, oldest first."""
    seen = httpx.get(f"{fake_provider_url}/_fake/requests", timeout=10).json()["requests"]
    return [r for r in seen if marker in orjson.dumps(r["body"]).decode()]


def ledger_entry(billing_db_url: str, request_id: str) -> tuple[Any, list[Any]] | None:
    """Billing's ledger entry of ``request_id`` and its line items (by sku), or None yet."""
    engine = sa.create_engine(billing_db_url)
    try:
        with engine.connect() as conn:
            entry = conn.execute(
                sa.text("SELECT * FROM ledger_entries WHERE request_id = :r"), {"r": request_id}
            ).one_or_none()
            if entry is None:
                return None
            items = conn.execute(
                sa.text("SELECT * FROM ledger_line_items WHERE entry_id = :e ORDER BY sku"),
                {"e": entry.id},
            ).all()
            return entry, list(items)
    finally:
        engine.dispose()


@contextlib.contextmanager
def extra_edge(stack: Stack, **settings: str) -> Iterator[str]:
    """Another edge process (``python -m edge``) on ``stack``'s database, NATS, router and
    catalog, on its own port; yields its origin once ready and asserts it exits 0 on SIGTERM.

    ``settings`` are extra ``GATEWAY_*`` variables for this edge alone.

    Its log goes to the stack's log directory, so greps over the stack's logs cover it.
    """
    port = free_port()
    env = {
        "PYTHONUNBUFFERED": "1",
        "NATS_URL": stack.nats_url,
        "GATEWAY_DATA_DIR": str(stack.data_dir),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_ROUTER_ADDR": f"127.0.0.1:{stack.config.ports.router}",
        "GATEWAY_ADMIN_TOKEN": stack.config.admin_token or "",
        "GATEWAY_CATALOG_PATH": str(stack.catalog_path),
        **(
            {"GATEWAY_DATABASE_URL": stack.config.database_url} if stack.config.database_url else {}
        ),
        **{k: v for k, v in os.environ.items() if k == "VIRTUAL_ENV"},
        **settings,
    }
    origin = f"http://127.0.0.1:{port}"

    def ready() -> bool | None:
        try:
            return httpx.get(f"{origin}/readyz", timeout=1).status_code == 200 or None
        except httpx.TransportError:
            return None

    with service_process("edge", env, log_path=stack.log_dir / f"edge-b-{port}.log") as proc:
        poll(ready, timeout=60)  # an edge starts in ~3 s; a loaded 2-core machine stretches it
        yield origin
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def without_generation_context(body: dict[str, Any]) -> dict[str, Any]:
    """A response body minus the gateway's own addition (seed 002's priced line items)."""
    assert "generation_context" in body, "the gateway should price every response"
    return {k: v for k, v in body.items() if k != "generation_context"}


def without_stream_generation_context(data: list[str]) -> list[str]:
    """SSE payloads with the gateway's line items taken off the stream's last chunk.

    The gateway adds no chunk: ``generation_context`` rides on the last one the
    client gets anyway (the usage chunk, else the last finishing one), right
    before [DONE], and on no other. The chunk is re-serialized compactly by orjson,
    as the fake provider writes its chunks.
    """
    carriers = [i for i, d in enumerate(data) if '"generation_context"' in d]
    assert carriers == [len(data) - 2] and data[-1] == "[DONE]", "line items on the last chunk"
    last = orjson.loads(data[-2])
    del last["generation_context"]
    return [*data[:-2], orjson.dumps(last).decode(), data[-1]]


@dataclass(frozen=True, slots=True)
class Burst:
    """Concurrent calls started at ``started_at`` (``time.time()``) and their answers."""

    started_at: float
    answers: list[httpx.Response]

    @classmethod
    async def run(cls, calls: Iterable[Awaitable[httpx.Response]], *, timeout_s: float) -> Burst:
        """Await ``calls`` together."""
        started_at = time.time()
        answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=timeout_s)
        return cls(started_at, list(answers))

    @property
    def statuses(self) -> list[int]:
        return [resp.status_code for resp in self.answers]

    def admitted_while_all_held(
        self, fake_provider_url: str, marker: str, *, answer_s: float = SLOW_ANSWER_S
    ) -> int:
        """Of a burst's calls on a model the fake answers ``answer_s`` late (``marker`` in
        their bodies), how many were admitted while no admitted call could yet have
        settled its reservation.

        The fake records when each admitted call reached it (``received_at``); a call
        is admitted before it reaches the provider and settles at least ``answer_s``
        after, so none settles before the first arrival + ``answer_s``, and every call
        that arrived before then was admitted while all of them held their full worst
        case: a budget worth N worst cases admits at most N of those, however slow the
        machine. (Later calls may fit in what earlier ones settled below their worst
        case; the ledger bounds those.)
        """
        arrived = sorted(
            r["received_at"]
            for r in fake_requests(fake_provider_url, marker)
            if r["received_at"] >= self.started_at and "delay_ms=" in r["path"]
        )
        return sum(1 for at in arrived if at < arrived[0] + answer_s) if arrived else 0
