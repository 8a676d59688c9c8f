"""Keep what a service does not use out of its memory: the one place for it.

Three helpers, called by the services' entry points:

- ``defer_nats_websocket`` (first thing in ``__main__``): below.
- ``skip_httpx_cli`` (first thing in the router's ``__main__``): ``httpx``
  imports its command-line client when its ``cli`` extra is installed (rich,
  pygments, click: 5 MiB); this imports httpx without it (``httpx.main`` is then
  httpx's own stub that asks for the extra). No service runs that CLI.
- ``release_free_memory`` (once, when a service has started): a full garbage
  collection, then glibc's ``malloc_trim(0)``, which hands back to the kernel
  the heap pages that imports, migrations and start-up freed but glibc kept
  (4-8 MiB of resident memory per service at rest). A no-op on a libc without it.

And the modules imported on first use instead of at start, each at its one
point of use (a local import with a comment naming this module):

- ``pypdf`` (14 MiB) in ``edge.documents._pdf_text``: only PDF uploads need it;
- ``grpc`` with the router's stubs (18 MiB) in rag (``rag.embed.RouterLink``):
  only collections with a router-backed embedding model call the router;
- ``edge.pipeline.schemas`` (jsonschema, 22 MiB): only endpoints with a schema.

The edge also runs uvicorn with ``ws="none"`` (``edge.drain``): it has no
WebSocket route, and ``ws="auto"`` imports the ``websockets`` package (6 MiB).

- ``cryptography`` (10 MiB) in ``edge.credentials``: only managed credentials.

Each costs its import once, on the first request that needs it, never on the
hot chat route: measured on the shared 2-core machine at load average 16,
pypdf (which imports cryptography itself) 1.2-3.9 s, grpc 0.6-1.5 s,
cryptography 0.15 s; a calm machine takes a fraction of that.

nats-py's ``nats.aio.transport`` imports aiohttp (and multidict) at the top, for
its WebSocket transport only; a service that talks to NATS over TCP still keeps
about 13 MiB of aiohttp resident for life. ``defer_nats_websocket`` imports that
module with aiohttp hidden, then gives it stand-ins that import the real
packages on first attribute access, so a ``ws://`` NATS URL still works (and
pays for aiohttp then). It must run before anything imports ``nats``: each
service's ``__main__`` calls it before its other imports. The router imports
aiohttp for its own upstream client and does not call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import sys
import types
from typing import Any

__all__ = ["defer_nats_websocket", "release_free_memory", "skip_httpx_cli"]

_DEFERRED = ("aiohttp", "multidict")


class _OnFirstUse(types.ModuleType):
    """A stand-in for a module: imports the real one when an attribute is read."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


def defer_nats_websocket() -> bool:
    """Import ``nats.aio.transport`` without aiohttp; False if it (or aiohttp) was already imported."""
    if "nats.aio.transport" in sys.modules or "aiohttp" in sys.modules:
        return False
    hidden = [name for name in _DEFERRED if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes ``import name`` fail
    try:
        transport = importlib.import_module("nats.aio.transport")
    finally:
        for name in hidden:
            del sys.modules[name]
    for name in _DEFERRED:
        setattr(transport, name, _OnFirstUse(name))
    return True


def skip_httpx_cli() -> bool:
    """Import httpx without its command-line client; False if httpx was already imported."""
    if "httpx" in sys.modules:
        return False
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # httpx falls back to a stub
    try:
        importlib.import_module("httpx")
    finally:
        del sys.modules["httpx._main"]
    return True


def release_free_memory() -> bool:
    """Collect garbage and return freed heap pages to the kernel; False without glibc."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True
