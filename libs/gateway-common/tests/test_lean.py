"""``lean.defer_nats_websocket``: nats imports without aiohttp; WebSocket support stays."""

from __future__ import annotations

import subprocess
import sys

_CHILD = """
import sys
from gateway_common.lean import defer_nats_websocket
assert defer_nats_websocket()
import nats, nats.aio.client, nats.aio.transport as transport
assert "aiohttp" not in sys.modules, "aiohttp was imported"
assert transport.aiohttp.WSMsgType.BINARY  # first use imports the real package
assert "aiohttp" in sys.modules
assert not defer_nats_websocket()
print("ok")
"""


def test_nats_imports_without_aiohttp_until_a_websocket_needs_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


_HTTPX_CHILD = """
import sys
from gateway_common.lean import skip_httpx_cli
assert skip_httpx_cli()
import httpx
assert "rich" not in sys.modules and "click" not in sys.modules, "the httpx CLI was imported"
assert httpx.AsyncClient and not skip_httpx_cli()
print("ok")
"""

# What start-up must not import (gateway_common.lean lists where each is imported on first use).
_DEFERRED_CHILD = """
import sys
from gateway_common.lean import defer_nats_websocket, release_free_memory
defer_nats_websocket()
import edge.main, rag.main
from edge.credentials import CredentialCipher
cipher = CredentialCipher(b"s" * 32)
for name in ("pypdf", "cryptography", "websockets"):
    assert name not in sys.modules, name + " was imported"
assert len(cipher.current_key_id) == 8 and "cryptography" in sys.modules
assert release_free_memory()  # glibc on this machine
print("ok")
"""


def _run(child: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_httpx_imports_without_its_command_line_client() -> None:
    _run(_HTTPX_CHILD)


def test_start_up_leaves_out_what_only_some_requests_need() -> None:
    _run(_DEFERRED_CHILD)
