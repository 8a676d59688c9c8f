"""``switchyard channels``: each command becomes the admin API call it names (requests recorded
by an ``httpx.MockTransport``; the API's own checks run over the real stack in
``tests/integration/test_channels.py``)."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from edge import cli
from edge.cli import app

CURRENT = {"model": "mock-chat", "allowed_origins": ["https://a.example"], "other": 1}


class Recorder:
    """Answers a GET with a project holding ``CURRENT`` settings, anything else 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        if request.method == "GET" and request.url.path == "/admin/projects/p1":
            return httpx.Response(200, json={"id": "p1", "settings": CURRENT})
        return httpx.Response(200, json={"ok": True})


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    client = functools.partial(cli.AdminClient, transport=httpx.MockTransport(found))
    monkeypatch.setattr(cli, "AdminClient", client)
    return found


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, ["--token", "t", *args], env={"COLUMNS": "200"})
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_create_sends_a_channel_project_with_its_settings(recorder: Recorder) -> None:
    run(
        "channels", "create", "shop", "--model", "mock-chat", "--system-prompt", "Help.",
        "--disabled", "--rate-limit-per-minute", "30", "--rate-limit-per-day", "2000",
        "--history-ttl-seconds", "3600",
        "--allowed-origin", "https://a.example", "--allowed-origin", "https://b.example",
    )  # fmt: skip
    assert recorder.requests == [
        (
            "POST",
            "/admin/projects",
            {
                "name": "shop",
                "type": "channel",
                "settings": {
                    "model": "mock-chat",
                    "system_prompt": "Help.",
                    "enabled": False,
                    "history_ttl_seconds": 3600,
                    "allowed_origins": ["https://a.example", "https://b.example"],
                    "rate_limits": {"per_minute": 30, "per_day": 2000},
                },
            },
        )
    ]


def test_update_keeps_the_settings_it_is_not_given(recorder: Recorder) -> None:
    run("channels", "update", "p1", "--rate-limit-per-minute", "5", "--no-allowed-origins")
    assert recorder.requests[0][:2] == ("GET", "/admin/projects/p1")
    assert recorder.requests[1] == (
        "PATCH",
        "/admin/projects/p1",
        {"settings": {**CURRENT, "allowed_origins": [], "rate_limits": {"per_minute": 5}}},
    )


def test_update_without_a_setting_is_refused(recorder: Recorder) -> None:
    run("channels", "update", "p1", ok=False)
    assert recorder.requests == []


def test_show_and_key(recorder: Recorder) -> None:
    run("channels", "show", "p1")
    run("channels", "key", "p1")
    run("channels", "key", "p1", "--rotate")
    assert [r[:2] for r in recorder.requests] == [
        ("GET", "/admin/projects/p1"),
        ("GET", "/admin/projects/p1/channel-key"),
        ("POST", "/admin/projects/p1/channel-key"),
    ]
