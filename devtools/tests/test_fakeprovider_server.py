"""The fake provider as a real process (uvicorn + uvloop): connection-level faults, shutdown."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.ports import free_port
from devtools.procs import Child

pytestmark = pytest.mark.timeout(30)

STREAM = {
    "model": "mock-chat",
    "stream": True,
    "messages": [{"role": "user", "content": "a b c d e f"}],
}


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Child]]:
    port = free_port()
    env = {**os.environ, "FAKE_PROVIDER_PORT": str(port)}
    log = tmp_path_factory.mktemp("fake") / "fakeprovider.log"
    child = Child(
        "fakeprovider",
        [sys.executable, "-m", "fakeprovider"],
        env=env,
        cwd=Path.cwd(),
        log_path=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url) or child.returncode is not None)
        assert child.returncode is None, child.tail()
        yield url, child
    finally:
        child.stop(5)


@pytest.fixture
def url(server: tuple[str, Child]) -> str:
    httpx.delete(f"{server[0]}/_fake/requests")
    return server[0]


def last_request(url: str) -> dict:
    return httpx.get(f"{url}/_fake/requests").json()["requests"][-1]


@pytest.mark.parametrize("path", ["/fault/reset=1/v1/models", "/v1/models"])
def test_reset_drops_the_connection(url: str, path: str) -> None:
    headers = {} if "fault" in path else {"x-fake-reset": "1"}
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(url + path, headers=headers)
    assert last_request(url)["broken"] is True
    assert httpx.get(f"{url}/v1/models").status_code == 200


@pytest.mark.parametrize(
    "path", ["/fault/break_after=3/v1/chat/completions", "/v1/chat/completions"]
)
def test_break_after_sends_n_events_then_drops(url: str, path: str) -> None:
    headers = {} if "fault" in path else {"x-fake-break-after": "3"}
    events: list[str] = []
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.stream("POST", url + path, json=STREAM, headers=headers) as response,
    ):
        assert response.status_code == 200
        events.extend(line for line in response.iter_lines() if line)
    assert len(events) == 3
    entry = last_request(url)
    assert entry["broken"] is True and entry["completed"] is False


def test_client_disconnect_is_recorded(url: str) -> None:
    headers = {"x-fake-chunk-delay-ms": "50"}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=STREAM, headers=headers
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    wait_until(lambda: last_request(url)["disconnected"])
    assert last_request(url)["completed"] is False


def test_slow_stream_completes(url: str) -> None:
    headers = {"x-fake-chunk-delay-ms": "1"}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=STREAM, headers=headers
    ) as response:
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    entry = last_request(url)
    assert entry["completed"] is True and entry["disconnected"] is False


def test_sigterm_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "FAKE_PROVIDER_PORT": str(port)}
    child = Child(
        "fp",
        [sys.executable, "-m", "fakeprovider"],
        env=env,
        cwd=Path.cwd(),
        log_path=tmp_path / "fp.log",
    )
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}") or child.returncode is not None)
    finally:
        status = child.stop(5)
    assert status == 0, child.tail()
