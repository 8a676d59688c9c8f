"""rag SIGKILLed mid-ingest, seen through the edge's HTTP routes (both backends).

Documents are uploaded on ``/v1/collections``; while one of them is ``running``,
rag is SIGKILLed. While it is down, the collection routes answer 503 and a
gateway on the collection follows its ``on_rag_failure`` (503 ``rag_unavailable``,
or an ungrounded answer with its header), each in bounded time, never a 500 or a
hang. rag is restarted (the stack's ``RAG_INGEST_LEASE_S`` is short, so the dead
worker's job is requeued at once): every document ends ``ready`` with all its
chunks, or ``failed`` with a reason, and a query and the grounded gateway answer
from it again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.helpers import poll

pytestmark = pytest.mark.timeout(90)

#: Enough text that ingesting every document takes a while (hash embedder, 32 chunks a
#: batch), so that some job is still running when rag is killed.
DOCUMENTS = 3
WORDS = 20_000
#: A call while rag is down must answer within this; rag's absence is known at once
#: (NATS "no responders"), so this only bounds a hang, it does not time the machine.
DOWN_ANSWER_S = 10.0


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _tenant(http: httpx.Client, stack: Stack) -> tuple[str, dict[str, str]]:
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    resp = http.post(
        "/admin/projects", json={"name": f"kill-{secrets.token_hex(4)}"}, headers=operator
    )
    assert resp.status_code == 201, resp.text
    project = resp.json()["id"]
    resp = http.post(
        f"/admin/projects/{project}/keys",
        json={"name": "k", "scopes": ["chat", "collections:write"]},
        headers=operator,
    )
    assert resp.status_code == 201, resp.text
    return project, {"authorization": f"Bearer {resp.json()['key']}"}


def _gateway(http: httpx.Client, stack: Stack, project: str, **fields: Any) -> str:
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    resp = http.post(f"/admin/projects/{project}/gateways", json=fields, headers=operator)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _text(n: int) -> str:
    return f"Document {n} is about lighthouse keepers. " + " ".join(
        f"w{n}x{i % 4099}" for i in range(WORDS)
    )


def _timed_post(http: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    started = time.monotonic()
    resp = http.post(url, **kwargs)
    assert time.monotonic() - started < DOWN_ANSWER_S, url
    return resp


def test_rag_sigkilled_mid_ingest_recovers_and_gateways_follow_their_setting(
    stack: Stack, http: httpx.Client
) -> None:
    project, h = _tenant(http, stack)
    resp = http.post("/v1/collections", json={"name": "manuals"}, headers=h)
    assert resp.status_code == 200, resp.text
    col = resp.json()["id"]
    strict = _gateway(http, stack, project, name="strict", model="mock-chat", collection_id=col)
    lenient = _gateway(
        http,
        stack,
        project,
        name="lenient",
        model="mock-chat",
        collection_id=col,
        on_rag_failure="ungrounded",
    )
    docs = f"/v1/collections/{col}/documents"
    ids = []
    for n in range(DOCUMENTS):
        resp = http.post(docs, json={"name": f"m{n}.txt", "text": _text(n)}, headers=h)
        assert resp.status_code == 200, resp.text
        ids.append(resp.json()["id"])

    def running() -> bool | None:
        seen = [http.get(f"{docs}/{d}", headers=h).json()["status"] for d in ids]
        assert seen != ["ready"] * DOCUMENTS, "ingested before the kill: raise WORDS"
        return True if "running" in seen else None

    poll(running, interval=0.02)
    try:
        assert stack.kill("rag") == -9  # mid-ingest: a job is running

        ask = {"messages": [{"role": "user", "content": "Who keeps lighthouses?"}]}
        refused = _timed_post(
            http, "/v1/chat/completions", json={"model": strict, **ask}, headers=h
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "rag_unavailable"
        ungrounded = _timed_post(
            http, "/api/v1/chat/completions", json={"model": lenient, **ask}, headers=h
        )
        assert ungrounded.status_code == 200, ungrounded.text
        assert ungrounded.headers["x-switchyard-grounding"] == "ungrounded"
        streamed = _timed_post(
            http,
            "/api/v1/chat-completions",
            json={"model": strict, "stream": True, **ask},
            headers=h,
        )
        assert streamed.status_code == 503, streamed.text  # refused before any chunk
        assert streamed.json()["error"]["code"] == "rag_unavailable"
        query = {"query": "lighthouse keepers", "top_k": 3}
        down = _timed_post(http, f"/v1/collections/{col}/query", json=query, headers=h)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["message"]
    finally:
        if stack.children["rag"].returncode is not None:
            stack.restart("rag")  # the session's stack serves later tests

    def finished() -> list[dict[str, Any]] | None:
        resp = [http.get(f"{docs}/{d}", headers=h) for d in ids]
        if any(r.status_code != 200 for r in resp):
            assert all(r.status_code in (200, 503) for r in resp), [r.text for r in resp]
            return None  # rag still starting
        bodies = [r.json() for r in resp]
        return bodies if all(b["status"] in ("ready", "failed") for b in bodies) else None

    for body in poll(finished, timeout=60, interval=0.1):
        if body["status"] == "failed":
            assert body["error"], body
        else:
            # All its chunks (the stack's RAG_CHUNK_WORDS 200, overlap 40), never part of them.
            words = len(_text(0).split())
            assert (body["progress"], body["chunk_count"]) == (1.0, -(-(words - 40) // 160)), body

    found = http.post(f"/v1/collections/{col}/query", json=query, headers=h)
    assert found.status_code == 200, found.text
    assert found.json()["data"], found.json()
    grounded = http.post("/v1/chat/completions", json={"model": strict, **ask}, headers=h)
    assert grounded.status_code == 200, grounded.text
    assert grounded.json()["choices"][0]["message"]["annotations"]
