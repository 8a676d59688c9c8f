"""``switchyard gateways``: every option becomes the admin API field it names (requests
recorded by an ``httpx.MockTransport``; the API's checks are tested in ``test_edge_gateways``)."""

from __future__ import annotations

import functools

import httpx
import pytest

from edge import cli

from .test_edge_cli_endpoints import Recorder, run


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    client = functools.partial(cli.AdminClient, transport=httpx.MockTransport(found))
    monkeypatch.setattr(cli, "AdminClient", client)
    return found


def test_create_update_list_show_delete(recorder: Recorder) -> None:
    run(
        "gateways", "create", "p1", "docs", "--model", "mock-chat",
        "--instructions", "Be brief.",
        "--params", '{"temperature": 0.2, "prefill": "Sure:"}',
        "--collection-id", "c1", "--top-k", "3", "--min-score", "0.25",
        "--overridable", "temperature", "--overridable", "top_p",
        "--routing", '{"policy": "auto", "cheap": "a", "strong": "b"}',
        "--on-rag-failure", "ungrounded",
    )  # fmt: skip
    run("gateways", "update", "p1", "g1", "--top-k", "7", "--routing", "none")
    run("gateways", "list", "p1")
    run("gateways", "show", "p1", "g1")
    run("gateways", "delete", "p1", "g1")
    base = "/admin/projects/p1/gateways"
    assert recorder.requests == [
        (
            "POST",
            base,
            {
                "name": "docs",
                "model": "mock-chat",
                "instructions": "Be brief.",
                "params": {"temperature": 0.2, "prefill": "Sure:"},
                "collection_id": "c1",
                "top_k": 3,
                "min_score": 0.25,
                "overridable": ["temperature", "top_p"],
                "routing": {"policy": "auto", "cheap": "a", "strong": "b"},
                "on_rag_failure": "ungrounded",
            },
        ),
        ("PATCH", f"{base}/g1", {"top_k": 7, "routing": None}),
        ("GET", base, None),
        ("GET", f"{base}/g1", None),
        ("DELETE", f"{base}/g1", None),
    ]
