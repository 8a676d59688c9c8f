"""The ``switchyard`` command line against a running stack: every command, over real HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from devtools.stack import Stack
from edge.cli import app

pytestmark = pytest.mark.timeout(120)


class Cli:
    """Runs ``switchyard`` in-process, configured through the environment like a shell would."""

    def __init__(self, stack: Stack) -> None:
        self.env = {
            "SWITCHYARD_URL": stack.base_url,
            "SWITCHYARD_ADMIN_TOKEN": stack.config.admin_token or "",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env, catch_exceptions=False)
        if not ok:
            assert result.exit_code == 1, result.output
            return result.stderr
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout) if result.stdout.strip() else None


def test_every_command(stack: Stack) -> None:
    cli = Cli(stack)
    project = cli(
        "projects",
        "create",
        "cli-project",
        "--type",
        "channel",
        "--settings",
        '{"site": "example"}',
    )
    pid = project["id"]
    assert project["type"] == "channel" and project["settings"] == {"site": "example"}
    assert pid in {p["id"] for p in cli("projects", "list")["data"]}
    assert cli("projects", "show", pid)["name"] == "cli-project"
    assert cli("projects", "update", pid, "--settings", '{"site": "other"}')["settings"] == {
        "site": "other"
    }

    created = cli(
        "keys",
        "create",
        pid,
        "--name",
        "ci",
        "--scope",
        "chat",
        "--scope",
        "embeddings",
        "--expires-in",
        "90d",
        "--description",
        "from the CLI",
    )
    key, kid = created["key"], created["id"]
    assert key.startswith("sk-sy-") and created["expires_at"] is not None
    listed = cli("keys", "list", pid)["data"]
    assert [k["id"] for k in listed] == [kid] and key not in orjson.dumps(listed).decode()
    assert cli("keys", "show", pid, kid)["description"] == "from the CLI"
    models = httpx.get(f"{stack.base_url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 200
    assert cli("keys", "revoke", pid, kid)["revoked_at"] is not None
    models = httpx.get(f"{stack.base_url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 401
    assert cli("keys", "delete", pid, kid) is None
    assert "not found" in cli("keys", "show", pid, kid, ok=False)

    provider_key = "sk-proj-cli-provider-key-1234"
    credential = cli("credentials", "add", pid, "--provider", "fake", "--api-key", provider_key)
    assert credential["last4"] == "1234" and provider_key not in orjson.dumps(credential).decode()
    assert [c["id"] for c in cli("credentials", "list", pid)["data"]] == [credential["id"]]
    refused = cli(
        "credentials",
        "add",
        pid,
        "--provider",
        "evil",
        "--api-key",
        "k",
        "--base-url",
        "http://169.254.169.254/",
        ok=False,
    )
    assert "metadata" in refused
    rewrap = cli("credentials", "rewrap")
    assert rewrap["rewrapped"] == 0 and rewrap["unchanged"] >= 1
    assert cli("credentials", "delete", pid, credential["id"]) is None
    assert cli("credentials", "list", pid)["data"] == []

    assert cli("projects", "delete", pid) is None
    assert "Project not found." in cli("projects", "show", pid, ok=False)


def test_errors_and_flags(stack: Stack) -> None:
    cli = Cli(stack)
    cli.env.pop("SWITCHYARD_ADMIN_TOKEN")
    assert "Missing Bearer token." in cli("projects", "list", ok=False)
    result = cli.runner.invoke(app, ["--token", "wrong", "projects", "list"], env=cli.env)
    assert result.exit_code == 1 and "401" in result.stderr
    result = cli.runner.invoke(app, ["--url", "http://127.0.0.1:9", "projects", "list"])
    assert result.exit_code == 1 and "cannot reach" in result.stderr


def test_the_console_script_is_installed(stack: Stack) -> None:
    script = Path(sys.executable).parent / "switchyard"
    out = subprocess.run(
        [
            str(script),
            "--url",
            stack.base_url,
            "--token",
            stack.config.admin_token or "",
            "projects",
            "list",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert "data" in orjson.loads(out.stdout)
