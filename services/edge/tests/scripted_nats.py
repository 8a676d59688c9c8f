"""Scripted responders on a private nats-server, for the edge's NATS clients' tests.

A client test (``RagClient``, ``SessionsClient``, the history recorder) drives the
client's half of a request/reply contract: ``script`` answers every request on a
subject with fixed bytes (or never), ``raised`` runs one call and returns the
``GatewayError`` it must raise. The fixtures ``private_nats`` (a nats-server of the
test's own) and ``nc`` (a connection to it) are in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway_common.errors import GatewayError

__all__ = ["raised", "script"]

_C = TypeVar("_C")


async def script(
    nc: Client, subject: str, answer: bytes | None, seen: list[bytes] | None = None
) -> None:
    """Answer every request on ``subject`` with ``answer`` (None: never answer); each
    request's payload is appended to ``seen`` when given."""

    async def respond(msg: Msg) -> None:
        if seen is not None:
            seen.append(msg.data)
        if answer is not None:
            await msg.respond(answer)

    await nc.subscribe(subject, cb=respond)
    await nc.flush()


async def raised(call: Callable[[_C], Awaitable[Any]], client: _C) -> GatewayError:
    """The ``GatewayError`` that ``call(client)`` raises (the test fails if it raises none)."""
    with pytest.raises(GatewayError) as info:
        await call(client)
    return info.value
