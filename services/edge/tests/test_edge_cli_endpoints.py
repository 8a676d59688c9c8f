"""``switchyard endpoints create | update``: every option becomes the admin API field it names
(the requests are recorded by an ``httpx.MockTransport``; the API's own checks are tested
through the real app in ``test_edge_endpoint_config`` and over the real stack in
``tests/integration/test_endpoint_config.py``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from edge import cli
from edge.cli import app

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
PII = {"type": "pii", "entities": ["email"], "action": "redact"}
TERMS = {"type": "blocked_terms", "terms": ["secret"]}


class Recorder:
    """Answers every request 200 with ``{"ok": true}`` and keeps (method, path, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
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


def test_create_sends_every_setting(recorder: Recorder, tmp_path: Path) -> None:
    schema_file = tmp_path / "in.json"
    schema_file.write_text(orjson.dumps(SCHEMA).decode())
    run(
        "endpoints", "create", "p1", "summarize", "--model", "mock-chat",
        "--prompt-template", "Summarize: {{text}}",
        "--input-schema", str(schema_file),
        "--output-schema", '{"type": "object"}',
        "--guardrail", orjson.dumps(PII).decode(),
        "--guardrail", orjson.dumps(TERMS).decode(),
        "--max-request-tokens", "4096",
        "--monthly-budget", "25.50",
        "--rate-limit-per-minute", "60",
        "--rate-limit-per-day", "10000",
        "--fallback", "mock-reasoning",
        "--fallback", "fake:mock-chat",
        "--sessions",
        "--session-ttl-seconds", "24h",
    )  # fmt: skip
    [(method, path, body)] = recorder.requests
    assert (method, path) == ("POST", "/admin/projects/p1/endpoints")
    assert body == {
        "slug": "summarize",
        "model": "mock-chat",
        "description": None,
        "system_prompt": None,
        "params": {},
        "streaming_enabled": False,
        "active": True,
        "prompt_template": "Summarize: {{text}}",
        "input_schema": SCHEMA,
        "output_schema": {"type": "object"},
        "guardrails": [PII, TERMS],
        "max_request_tokens": 4096,
        "monthly_budget": "25.50",  # a string: never through a float
        "rate_limits": {"per_minute": 60, "per_day": 10000},
        "fallbacks": ["mock-reasoning", "fake:mock-chat"],
        "sessions_enabled": True,
        "session_ttl_seconds": 86400,
    }


def test_create_leaves_unset_settings_to_the_api_defaults(recorder: Recorder) -> None:
    run("endpoints", "create", "p1", "plain", "--model", "mock-chat")
    [(_, _, body)] = recorder.requests
    for name in ("input_schema", "output_schema", "max_request_tokens", "monthly_budget"):
        assert name not in body
    assert "rate_limits" not in body and "session_ttl_seconds" not in body
    assert body["guardrails"] == [] and body["fallbacks"] == []
    assert body["sessions_enabled"] is False


def test_update_sends_only_what_is_given(recorder: Recorder) -> None:
    run(
        "endpoints", "update", "p1", "summarize",
        "--guardrail", orjson.dumps(TERMS).decode(),
        "--rate-limit-per-minute", "5",
        "--rate-limit-tokens-per-minute", "9000",
        "--no-sessions",
        "--session-ttl-seconds", "600",
        "--monthly-budget", "0",
    )  # fmt: skip
    [(method, path, body)] = recorder.requests
    assert (method, path) == ("PATCH", "/admin/projects/p1/endpoints/summarize")
    assert body == {
        "guardrails": [TERMS],
        "rate_limits": {"per_minute": 5, "tokens_per_minute": 9000},
        "sessions_enabled": False,
        "session_ttl_seconds": 600,
        "monthly_budget": "0",
    }


def test_update_clears(recorder: Recorder) -> None:
    run(
        "endpoints", "update", "p1", "summarize",
        "--prompt-template", "",
        "--input-schema", "none",
        "--output-schema", "NONE",
        "--max-request-tokens", "none",
        "--monthly-budget", "none",
        "--no-guardrails", "--no-fallbacks", "--no-rate-limits",
    )  # fmt: skip
    [(_, _, body)] = recorder.requests
    assert body == {
        "prompt_template": None,
        "input_schema": None,
        "output_schema": None,
        "max_request_tokens": None,
        "monthly_budget": None,
        "guardrails": [],
        "fallbacks": [],
        "rate_limits": None,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--guardrail", "{not json"), "--guardrail #1 is not JSON"),
        (("--input-schema", "/no/such/file.json"), "--input-schema is not JSON"),
        (("--max-request-tokens", "many"), "not an integer"),
        (("--monthly-budget", "lots"), "not a decimal amount"),
        (("--session-ttl-seconds", "forever"), "use seconds"),
        (("--rate-limit-per-minute", "x"), "'--rate-limit-per-minute'"),
    ],
)
def test_bad_values_are_refused_before_any_request(
    recorder: Recorder, args: tuple[str, ...], message: str
) -> None:
    output = run("endpoints", "create", "p1", "s", "--model", "m", *args, ok=False)
    assert message in output and recorder.requests == []


def test_update_refuses_a_value_and_its_clearing_flag(recorder: Recorder) -> None:
    output = run("endpoints", "update", "p1", "s", "--fallback", "m", "--no-fallbacks", ok=False)
    assert "--no-fallbacks" in output and recorder.requests == []


CREATE_OPTIONS = (
    "--model", "--description", "--system-prompt", "--params", "--streaming", "--active",
    "--prompt-template", "--input-schema", "--output-schema", "--guardrail",
    "--max-request-tokens", "--monthly-budget", "--rate-limit-per-minute",
    "--rate-limit-per-day", "--rate-limit-tokens-per-minute", "--fallback", "--sessions",
    "--no-sessions", "--session-ttl-seconds",
)  # fmt: skip
UPDATE_OPTIONS = (
    *CREATE_OPTIONS, "--slug", "--no-guardrails", "--no-fallbacks", "--no-rate-limits",
)  # fmt: skip


@pytest.mark.parametrize(
    ("command", "options"), [("create", CREATE_OPTIONS), ("update", UPDATE_OPTIONS)]
)
def test_help_shows_every_setting(command: str, options: tuple[str, ...]) -> None:
    output = run("endpoints", command, "--help")
    for option in options:
        assert option in output, option
    assert "{{name}}" in output and "FILE|JSON" in output and "repeatable" in output
