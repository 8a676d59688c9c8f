"""``/v1/collections`` on the real stack (both backends): the edge's routes over NATS to rag.

Create, add text / Markdown / a PDF written here, poll to ``ready``, query
ranking, listings and deletes; scopes (403 without them, write implies read);
another project's collection is 404 on every route; bad uploads get clear 4xx
in OpenAI's shape.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import Stack
from tests.integration.pdfs import pdf_with_text

pytestmark = pytest.mark.timeout(180)

RUST = "The Rust borrow checker enforces ownership rules so memory stays safe without a collector."
BEES = "# Bees\n\nHoney bees pollinate flowers and store nectar as honey in wax hives."
TEA = ["Green tea is best brewed at eighty degrees Celsius", "for two minutes, never boiling."]


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _project_keys(http: httpx.Client, stack: Stack, *scope_sets: list[str]) -> list[str]:
    """A fresh project and one key per scope set, as ``Authorization`` bearers."""
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    resp = http.post(
        "/admin/projects", json={"name": f"kb-{secrets.token_hex(4)}"}, headers=operator
    )
    assert resp.status_code == 201, resp.text
    project = resp.json()["id"]
    keys = []
    for scopes in scope_sets:
        resp = http.post(
            f"/admin/projects/{project}/keys",
            json={"name": "-".join(scopes).replace(":", "_"), "scopes": scopes},
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
        keys.append(resp.json()["key"])
    return keys


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _ready(http: httpx.Client, headers: dict[str, str], col: str, doc: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        resp = http.get(f"/v1/collections/{col}/documents/{doc}", headers=headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert body["status"] in ("queued", "running", "ready", "failed")
        if body["status"] in ("ready", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_collection_lifecycle_upload_query_delete(stack: Stack, http: httpx.Client) -> None:
    (writer,) = _project_keys(http, stack, ["collections:write"])
    h = _auth(writer)
    resp = http.post("/v1/collections", json={"name": "kb", "description": "notes"}, headers=h)
    assert resp.status_code == 200, resp.text
    col = resp.json()
    assert (col["object"], col["name"], col["document_count"]) == ("collection", "kb", 0)
    _error(http.post("/v1/collections", json={"name": "kb"}, headers=h), 409, "collection_exists")

    base = f"/v1/collections/{col['id']}/documents"
    ids = {}
    resp = http.post(base, json={"name": "rust.txt", "text": RUST}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "queued" and resp.json()["created"] is True
    ids["rust"] = resp.json()["id"]
    resp = http.post(base, files={"file": ("bees.md", BEES.encode(), "text/markdown")}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "bees.md"
    ids["bees"] = resp.json()["id"]
    pdf = pdf_with_text(TEA)
    resp = http.post(
        base,
        files={"file": ("tea.pdf", pdf, "application/pdf")},
        data={"name": "Tea guide"},
        headers=h,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "Tea guide"
    ids["tea"] = resp.json()["id"]
    for doc in ids.values():
        ready = _ready(http, h, col["id"], doc)
        assert ready["status"] == "ready" and ready["chunk_count"] >= 1, ready
        assert ready["progress"] == 1.0

    # Same content again: the existing document, nothing re-indexed.
    again = http.post(base, files={"file": ("copy.txt", RUST.encode(), "text/plain")}, headers=h)
    assert again.json()["id"] == ids["rust"] and again.json()["created"] is False

    q = f"/v1/collections/{col['id']}/query"
    for question, expected in (
        ("who enforces ownership and memory safety?", "rust"),
        ("what do honey bees store in their hives?", "bees"),
        ("at what temperature is green tea brewed?", "tea"),
    ):
        resp = http.post(q, json={"query": question, "top_k": 2}, headers=h)
        assert resp.status_code == 200, resp.text
        chunks = resp.json()["data"]
        assert 1 <= len(chunks) <= 2 and chunks[0]["document_id"] == ids[expected], chunks
        assert all(0 <= c["score"] <= 1 for c in chunks)
        assert [c["score"] for c in chunks] == sorted((c["score"] for c in chunks), reverse=True)
        assert chunks[0]["text"] and chunks[0]["chunk_index"] == 0
    assert (
        "eighty degrees"
        in http.post(q, json={"query": "green tea"}, headers=h).json()["data"][0]["text"]
    )

    listed = http.get(base, headers=h).json()
    assert listed["object"] == "list" and {d["id"] for d in listed["data"]} == set(ids.values())
    assert http.get(f"/v1/collections/{col['id']}", headers=h).json()["document_count"] == 3
    assert [c["id"] for c in http.get("/v1/collections", headers=h).json()["data"]] == [col["id"]]

    resp = http.delete(f"{base}/{ids['rust']}", headers=h)
    assert resp.json() == {"id": ids["rust"], "object": "collection.document", "deleted": True}
    _error(http.get(f"{base}/{ids['rust']}", headers=h), 404, "document_not_found")
    hits = http.post(q, json={"query": "ownership borrow checker"}, headers=h).json()["data"]
    assert ids["rust"] not in {c["document_id"] for c in hits}

    resp = http.delete(f"/v1/collections/{col['id']}", headers=h)
    assert resp.json() == {"id": col["id"], "object": "collection", "deleted": True}
    _error(http.get(f"/v1/collections/{col['id']}", headers=h), 404, "collection_not_found")
    assert http.get("/v1/collections", headers=h).json()["data"] == []


def test_scopes_gate_reads_and_writes(stack: Stack, http: httpx.Client) -> None:
    writer, reader, chat = _project_keys(
        http, stack, ["collections:write"], ["collections:read"], ["chat", "admin"]
    )
    col = http.post("/v1/collections", json={"name": "kb"}, headers=_auth(writer)).json()
    base = f"/v1/collections/{col['id']}"
    doc = http.post(
        f"{base}/documents", json={"name": "a", "text": RUST}, headers=_auth(writer)
    ).json()
    reads = [
        ("GET", "/v1/collections", None),
        ("GET", base, None),
        ("GET", f"{base}/documents", None),
        ("GET", f"{base}/documents/{doc['id']}", None),
        ("POST", f"{base}/query", {"query": "ownership"}),
    ]
    writes = [
        ("POST", "/v1/collections", {"name": "other"}),
        ("DELETE", base, None),
        ("POST", f"{base}/documents", {"name": "b", "text": BEES}),
        ("DELETE", f"{base}/documents/{doc['id']}", None),
    ]
    for method, path, body in reads:
        assert http.request(method, path, json=body, headers=_auth(reader)).status_code == 200
        error = _error(
            http.request(method, path, json=body, headers=_auth(chat)), 403, "insufficient_scope"
        )
        assert "collections:read" in error["message"]
    for method, path, body in writes:
        error = _error(
            http.request(method, path, json=body, headers=_auth(reader)), 403, "insufficient_scope"
        )
        assert "collections:write" in error["message"]
    _error(http.get("/v1/collections"), 401)
    # Nothing the refused writes asked for happened.
    assert http.get(f"{base}/documents", headers=_auth(reader)).json()["data"][0]["id"] == doc["id"]


def test_another_projects_collection_is_404_everywhere(stack: Stack, http: httpx.Client) -> None:
    (a,) = _project_keys(http, stack, ["collections:write"])
    (b,) = _project_keys(http, stack, ["collections:write"])
    col = http.post("/v1/collections", json={"name": "secret-kb"}, headers=_auth(a)).json()
    base = f"/v1/collections/{col['id']}"
    doc = http.post(f"{base}/documents", json={"name": "s", "text": RUST}, headers=_auth(a)).json()
    _ready(http, _auth(a), col["id"], doc["id"])
    for method, path, body in (
        ("GET", base, None),
        ("DELETE", base, None),
        ("GET", f"{base}/documents", None),
        ("POST", f"{base}/documents", {"name": "x", "text": "planted"}),
        ("GET", f"{base}/documents/{doc['id']}", None),
        ("DELETE", f"{base}/documents/{doc['id']}", None),
        ("POST", f"{base}/query", {"query": "ownership"}),
    ):
        resp = http.request(method, path, json=body, headers=_auth(b))
        _error(resp, 404)
        assert "secret-kb" not in resp.text
    assert http.get("/v1/collections", headers=_auth(b)).json()["data"] == []
    # A's collection is intact.
    listed = http.get(f"{base}/documents", headers=_auth(a)).json()["data"]
    assert [d["id"] for d in listed] == [doc["id"]]


def test_bad_uploads_get_clear_4xx(stack: Stack, http: httpx.Client) -> None:
    (writer,) = _project_keys(http, stack, ["collections:write"])
    h = _auth(writer)
    col = http.post("/v1/collections", json={"name": "kb"}, headers=h).json()
    base = f"/v1/collections/{col['id']}/documents"

    def upload(name: str, data: bytes, ctype: str) -> httpx.Response:
        return http.post(base, files={"file": (name, data, ctype)}, headers=h)

    _error(upload("empty.txt", b"", "text/plain"), 400, "empty_document")
    _error(upload("blank.md", b"  \n\n ", "text/markdown"), 400, "empty_document")
    _error(upload("image.png", b"\x89PNG\r\n", "image/png"), 415, "unsupported_media_type")
    _error(upload("scan.pdf", pdf_with_text([]), "application/pdf"), 400, "pdf_without_text")
    _error(upload("broken.pdf", b"%PDF-1.4 not really", "application/pdf"), 400)
    _error(upload("latin1.txt", "caf\xe9".encode("latin-1"), "text/plain"), 400)
    _error(upload("huge.txt", b"word " * (2 * 1024 * 1024 + 1), "text/plain"), 413)
    _error(upload("big.txt", b"word " * 200_000, "text/plain"), 413, "document_too_large")
    _error(http.post(base, json={"name": "n", "text": ""}, headers=h), 400, "empty_document")
    error = _error(http.post(base, json={"text": "no name"}, headers=h), 400)
    assert "name" in error["message"]
    _error(http.post(base, content=b"raw", headers={**h, "content-type": "text/csv"}), 415)
    _error(http.post(base, data={"name": "nofile"}, headers=h), 415)  # a urlencoded form
    error = _error(http.post(base, files={"name": (None, b"nofile")}, headers=h), 400)
    assert "'file'" in error["message"]
    q = f"/v1/collections/{col['id']}/query"
    _error(http.post(q, json={"query": "x", "top_k": 10_000}, headers=h), 400)
    _error(http.post(q, json={"query": ""}, headers=h), 400)
    assert http.get(base, headers=h).json()["data"] == []
