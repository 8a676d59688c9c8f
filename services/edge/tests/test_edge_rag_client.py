"""``RagClient``: how each rag answer (or its absence) maps to an HTTP-shaped error.

Each test has a private nats-server. The error mapping is driven by scripted
replies on the rag subjects (the client's half of ``gateway_common.rag_api``);
the round trip at the end runs the real rag service as a process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from edge.rag_client import (
    COLLECTION_EXISTS,
    COLLECTION_NOT_FOUND,
    DOCUMENT_NOT_FOUND,
    INVALID_COLLECTION_REQUEST,
    RagClient,
)
from gateway_common import subjects
from gateway_common.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from gateway_common.testing import health_reply, service_process, wait_for

from .scripted_nats import raised, script

pytestmark = pytest.mark.timeout(60)

Call = Callable[[RagClient], Awaitable[Any]]
CALLS: dict[str, Call] = {
    subjects.RAG_QUERY: lambda c: c.query("p", "c", "what?"),
    subjects.RAG_COLLECTION_CREATE: lambda c: c.create_collection("p", "kb"),
    subjects.RAG_COLLECTION_LIST: lambda c: c.list_collections("p"),
    subjects.RAG_COLLECTION_GET: lambda c: c.get_collection("p", "c"),
    subjects.RAG_COLLECTION_DELETE: lambda c: c.delete_collection("p", "c"),
    subjects.RAG_DOCUMENT_ADD: lambda c: c.add_document("p", "c", "a.txt", "hello"),
    subjects.RAG_DOCUMENT_LIST: lambda c: c.list_documents("p", "c"),
    subjects.RAG_DOCUMENT_GET: lambda c: c.get_document("p", "c", "d"),
    subjects.RAG_DOCUMENT_DELETE: lambda c: c.delete_document("p", "c", "d"),
}
DOCUMENT_SUBJECTS = {subjects.RAG_DOCUMENT_GET, subjects.RAG_DOCUMENT_DELETE}


@pytest.mark.parametrize("subject", list(CALLS))
async def test_no_responder_is_503(nc: Client, subject: str) -> None:
    err = await raised(CALLS[subject], RagClient(nc, timeout_s=0.5))
    assert isinstance(err, ServiceUnavailable) and err.http_status == 503
    assert err.message == "The gateway's knowledge collections are unavailable. Please retry."


@pytest.mark.parametrize("subject", [subjects.RAG_QUERY, subjects.RAG_DOCUMENT_ADD])
async def test_a_silent_responder_is_503_at_the_deadline(nc: Client, subject: str) -> None:
    await script(nc, subject, None)
    started = time.monotonic()
    err = await raised(CALLS[subject], RagClient(nc, timeout_s=0.2))
    assert isinstance(err, ServiceUnavailable)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("subject", list(CALLS))
@pytest.mark.parametrize(
    "answer", [b'{"status":"error","message":"database error"}', b"{not json", b'{"status":"?"}']
)
async def test_an_error_or_unreadable_reply_is_503(nc: Client, subject: str, answer: bytes) -> None:
    await script(nc, subject, answer)
    err = await raised(CALLS[subject], RagClient(nc))
    assert isinstance(err, ServiceUnavailable)


@pytest.mark.parametrize("subject", sorted(set(CALLS) - {subjects.RAG_COLLECTION_LIST}))
async def test_not_found_is_a_404(nc: Client, subject: str) -> None:
    await script(nc, subject, b'{"status":"not_found"}')
    err = await raised(CALLS[subject], RagClient(nc))
    assert isinstance(err, NotFound) and err.http_status == 404
    if subject in DOCUMENT_SUBJECTS:
        assert (err.code, err.param) == (DOCUMENT_NOT_FOUND, "document_id")
    else:
        assert (err.code, err.param) == (COLLECTION_NOT_FOUND, "collection_id")


@pytest.mark.parametrize("subject", list(CALLS))
async def test_invalid_is_a_400_with_rags_message(nc: Client, subject: str) -> None:
    await script(nc, subject, b'{"status":"invalid","message":"name: too long"}')
    err = await raised(CALLS[subject], RagClient(nc))
    assert isinstance(err, InvalidRequest) and err.http_status == 400
    assert err.code == INVALID_COLLECTION_REQUEST and "name: too long" in err.message


async def test_conflict_is_a_409(nc: Client) -> None:
    await script(nc, subjects.RAG_COLLECTION_CREATE, b'{"status":"conflict"}')
    err = await raised(CALLS[subjects.RAG_COLLECTION_CREATE], RagClient(nc))
    assert err.http_status == 409 and err.code == COLLECTION_EXISTS
    assert err.error_type == "invalid_request_error"


async def test_an_ok_reply_without_its_payload_is_503(nc: Client) -> None:
    await script(nc, subjects.RAG_COLLECTION_GET, b'{"status":"ok"}')
    err = await raised(CALLS[subjects.RAG_COLLECTION_GET], RagClient(nc))
    assert isinstance(err, ServiceUnavailable)


async def test_a_request_that_cannot_be_built_is_a_400_sent_nowhere(nc: Client) -> None:
    sent: list[bytes] = []

    async def record(msg: Msg) -> None:
        sent.append(msg.data)
        await msg.respond(b'{"status":"ok","chunks":[]}')

    await nc.subscribe(subjects.RAG_QUERY, cb=record)
    client = RagClient(nc)
    err = await raised(lambda c: c.query("p", "c", "q", top_k=10_000), client)
    assert isinstance(err, InvalidRequest) and "top_k" in err.message
    err = await raised(lambda c: c.query("p", "c", ""), client)
    assert isinstance(err, InvalidRequest) and "query" in err.message
    assert sent == []


async def test_a_document_over_the_servers_max_payload_is_413(nc: Client) -> None:
    await script(nc, subjects.RAG_DOCUMENT_ADD, b'{"status":"ok"}')
    huge = "x" * (nc.max_payload + 1)
    err = await raised(lambda c: c.add_document("p", "c", "big.txt", huge), RagClient(nc))
    assert isinstance(err, PayloadTooLarge) and err.http_status == 413


async def test_a_round_trip_against_the_rag_service(
    nc: Client, private_nats: str, tmp_path: Path
) -> None:
    env = {
        "NATS_URL": private_nats,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'rag.db'}",
        "RAG_INGEST_POLL_S": "0.1",
    }
    log = tmp_path / "rag.log"
    with service_process("rag", env, log_path=log):
        await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
        client = RagClient(nc, timeout_s=5)
        col = await client.create_collection("proj", "kb", description="notes")
        assert (col.name, col.description) == ("kb", "notes"), log.read_text()
        err = await raised(lambda c: c.create_collection("proj", "kb"), client)
        assert err.http_status == 409
        doc, created = await client.add_document(
            "proj", col.id, "rust.txt", "The Rust borrow checker enforces ownership rules."
        )
        assert created and doc.status == "queued"
        await client.add_document("proj", col.id, "tea.txt", "Green tea brews at eighty degrees.")
        deadline = time.monotonic() + 30
        while (await client.get_document("proj", col.id, doc.id)).status != "ready":
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        _, again = await client.add_document(
            "proj", col.id, "copy.txt", "The Rust borrow checker enforces ownership rules."
        )
        assert not again
        found = await client.query("proj", col.id, "who enforces ownership?", top_k=1)
        assert [c.document_id for c in found.chunks] == [doc.id]
        assert [c.id for c in await client.list_collections("proj")] == [col.id]
        assert doc.id in {d.id for d in await client.list_documents("proj", col.id)}

        # Another project sees none of it.
        assert await client.list_collections("other") == []
        for call in (
            lambda c: c.get_collection("other", col.id),
            lambda c: c.query("other", col.id, "ownership"),
            lambda c: c.get_document("other", col.id, doc.id),
            lambda c: c.delete_collection("other", col.id),
        ):
            assert isinstance(await raised(call, client), NotFound)

        assert (await client.delete_document("proj", col.id, doc.id)).id == doc.id
        err = await raised(lambda c: c.get_document("proj", col.id, doc.id), client)
        assert err.code == DOCUMENT_NOT_FOUND
        assert (await client.delete_collection("proj", col.id)).id == col.id
        assert await client.list_collections("proj") == []
