"""The soak's request mix: the OpenAI chat and stream of issue 7, and the features of wave 2
(issue 20, point 5), each made through the admin API as an operator would.

``prepare_mix`` builds, on a running stack:

    an ``ai_gateway`` project with a chat key
        endpoint ``soak-chat`` (model ``bench-chat``, ``sessions_enabled``): calls carry the
            session id an earlier answer issued, so history is read and appended
        a collection of a few documents from the retrieval bench's labelled set (the
            stack's default embedder, ``local:hash-v1``), all ready, and a gateway with
            that collection: every call retrieves and grounds its answer
    a ``channel`` project (model ``bench-chat``) with its own key and a large top-up, so
        its calls reserve and settle credits; site-chosen session ids

and returns the kinds of request the wrk script cycles through (``MixKind``), in the
order of ``CYCLE``: chat and stream stay the bulk, each new feature is one request in nine.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from .load import chat_body
from .target import TargetError

__all__ = ["CYCLE", "MixKind", "prepare_mix"]

#: Kinds in the order one wrk thread sends them (repeated).
CYCLE = ("chat", "stream", "endpoint", "chat", "stream", "gateway", "chat", "stream", "channel")
#: How many documents of the labelled set the collection holds.
_DOCUMENTS = 4
#: A session (endpoint or channel) is continued for this many calls, then a new one starts,
#: so history stays short (as a visitor's conversation would) and sessions keep being created.
SESSION_TURNS = 10
_QUESTION = "How long do I have to return an unused bicycle?"
_READY_S = 60.0
#: The retrieval bench's labelled set (a fictional bike shop's documents).
_DOCUMENTS_PATH = Path(__file__).resolve().parent / "rag_set" / "documents.json"


@dataclass(frozen=True)
class MixKind:
    """One kind of request: where it goes, with which body and credentials.

    ``session`` says how the script fills ``@SESSION@`` in ``session_body``:
    ``"issued"`` (the id an earlier answer's ``x-switchyard-session-id`` gave; ``body``
    without one starts a session), ``"chosen"`` (an id the caller makes up), or ``""``.
    """

    name: str
    path: str
    body: bytes
    headers: Mapping[str, str]
    session: str = ""
    session_body: bytes = b""


def _ok(reply: httpx.Response, what: str, status: int = 201) -> dict[str, object]:
    if reply.status_code != status:
        raise TargetError(f"soak setup: {what} answered {reply.status_code}: {reply.text[:500]}")
    body: dict[str, object] = reply.json()
    return body


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def _collection(http: httpx.Client, headers: Mapping[str, str]) -> str:
    """A collection holding the first documents of the labelled set, once all are ready."""
    made = _ok(
        http.post("/v1/collections", json={"name": "soak-kb"}, headers=headers), "collection", 200
    )
    collection = str(made["id"])
    ids = []
    for doc in json.loads(_DOCUMENTS_PATH.read_text())[:_DOCUMENTS]:
        added = _ok(
            http.post(
                f"/v1/collections/{collection}/documents",
                json={"name": doc["name"], "text": doc["text"]},
                headers=headers,
            ),
            "document add",
            status=200,
        )
        ids.append(str(added["id"]))
    deadline = time.monotonic() + _READY_S
    for doc_id in ids:
        while True:
            got = _ok(
                http.get(f"/v1/collections/{collection}/documents/{doc_id}", headers=headers),
                "document get",
                status=200,
            )
            if got["status"] == "ready":
                break
            if got["status"] == "failed" or time.monotonic() > deadline:
                raise TargetError(f"soak setup: document {doc_id} is {got['status']}: {got}")
            time.sleep(0.2)
    return collection


def prepare_mix(base_url: str, *, admin_token: str, api_key: str) -> list[MixKind]:
    """Make the projects, endpoint, collection, gateway and channel; the kinds of ``CYCLE``."""
    operator = _bearer(admin_token)
    with httpx.Client(base_url=base_url, timeout=30.0) as http:
        project = str(
            _ok(
                http.post("/admin/projects", json={"name": "soak-wave2"}, headers=operator),
                "project",
            )["id"]
        )
        scopes = ["chat", "collections:read", "collections:write"]
        key = _ok(
            http.post(
                f"/admin/projects/{project}/keys",
                json={"name": "soak", "scopes": scopes},
                headers=operator,
            ),
            "key",
        )["key"]
        tenant = _bearer(str(key))
        _ok(
            http.post(
                f"/admin/projects/{project}/endpoints",
                json={"slug": "soak-chat", "model": "bench-chat", "sessions_enabled": True},
                headers=operator,
            ),
            "endpoint",
        )
        collection = _collection(http, tenant)
        gateway = _ok(
            http.post(
                f"/admin/projects/{project}/gateways",
                json={
                    "name": "soak-rag",
                    "model": "bench-chat",
                    "collection_id": collection,
                    "top_k": 2,
                },
                headers=operator,
            ),
            "gateway",
        )
        channel = str(
            _ok(
                http.post(
                    "/admin/projects",
                    json={
                        "name": "soak-channel",
                        "type": "channel",
                        "settings": {"model": "bench-chat"},
                    },
                    headers=operator,
                ),
                "channel",
            )["id"]
        )
        channel_key = _ok(
            http.post(f"/admin/projects/{channel}/channel-key", headers=operator),
            "channel key",
            200,
        )["key"]
        _ok(
            http.post(
                f"/admin/projects/{channel}/credits/topups",
                json={"topup_id": secrets.token_hex(6), "amount": "1000000.00"},
                headers=operator,
            ),
            "top-up",
            200,
        )  # fmt: skip
    message = {"role": "user", "content": _QUESTION}
    return [
        MixKind("chat", "/v1/chat/completions", chat_body("bench-chat", stream=False), _bearer(api_key)),
        MixKind("stream", "/v1/chat/completions", chat_body("bench-stream", stream=True), _bearer(api_key)),
        MixKind(
            "endpoint",
            f"/api/{project}/soak-chat",
            orjson.dumps({"message": _QUESTION}),
            tenant,
            session="issued",
            session_body=orjson.dumps({"message": _QUESTION, "session_id": "@SESSION@"}),
        ),
        MixKind(
            "gateway",
            "/v1/chat/completions",
            orjson.dumps({"model": gateway["id"], "messages": [message]}),
            tenant,
        ),
        MixKind(
            "channel",
            "/channel/v1/chat",
            b"",
            {"X-Channel-Key": str(channel_key), "Content-Type": "application/json"},
            session="chosen",
            session_body=orjson.dumps({"message": _QUESTION, "session_id": "@SESSION@"}),
        ),
    ]  # fmt: skip
