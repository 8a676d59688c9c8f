"""``make run``'s entry point: it starts everything, serves, and leaves nothing behind.

Runs ``python -m devtools.run`` (what ``make run`` calls after installing) on free
ports and a temporary data dir, twice: the second run must work after the first
was stopped, and must show the same generated API key.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from devtools.ports import PortPlan

pytestmark = pytest.mark.integration

_KEY = re.compile(r"API key\s+(\S+)")
_BASE = re.compile(r"base URL\s+(\S+)")


def _processes_using(marker: str) -> list[int]:
    """Pids of live processes whose environment or command line mentions ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            text = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().split()[2]
        except (OSError, IndexError):
            continue
        if state != "Z" and marker.encode() in text:
            found.append(int(proc.name))
    return found


def _run_once(env: dict[str, str], data_dir: Path, stop: signal.Signals) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output: list[str] = []
        base_url = key = None
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while key is None:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            output.append(line)
            if m := _BASE.search(line):
                base_url = m.group(1)
            if m := _KEY.search(line):
                key = m.group(1)
        assert base_url is not None
        with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10) as client:
            reply = client.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": "are you up"}]
            )
        assert reply.choices[0].message.content is not None
        assert reply.choices[0].message.content.startswith("are you up [")

        proc.send_signal(stop)
        assert proc.wait(timeout=45) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    leftovers = _processes_using(str(data_dir))
    assert leftovers == [], f"processes left behind: {leftovers}"
    return key


# Two whole start-serve-stop cycles, each allowed 90 s to start and 45 s to stop: the
# suite's 120 s per test is shorter than what the test itself allows on a loaded machine.
@pytest.mark.timeout(300)
def test_make_run_starts_serves_and_stops_cleanly_twice(tmp_path: Path) -> None:
    ports = PortPlan.free()
    data_dir = tmp_path / "data"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "NATS_URL", "ROUTER_", "BILLING_"))
    }
    env |= {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_PORT": str(ports.edge),
        "ROUTER_PORT": str(ports.router),
        "FAKE_PROVIDER_PORT": str(ports.fake_provider),
        "EMBEDDED_NATS_PORT": str(ports.nats),
        "EMBEDDED_NATS_MONITOR_PORT": str(ports.nats_monitor),
        "ROUTER_METRICS_PORT": str(ports.router_metrics),
        "BILLING_METRICS_PORT": str(ports.billing_metrics),
        "SESSIONS_METRICS_PORT": str(ports.sessions_metrics),
        "RAG_METRICS_PORT": str(ports.rag_metrics),
    }
    first_key = _run_once(env, data_dir, signal.SIGINT)
    second_key = _run_once(env, data_dir, signal.SIGTERM)
    assert first_key == second_key
    assert first_key.startswith("sk-sy-dev-")
