"""NATS connection and JetStream declarations shared by every service.

``connect`` opens one connection per process (built in ``main``, closed by
its exit stack). ``ensure_streams`` declares the streams idempotently: it
creates a missing stream and updates an existing one to the declared config,
so any service may call it at start-up in any order. The rate limiter's counter
streams (``RATELIMIT_STREAMS``) are declared the same way, by the edge only
(``ensure_streams(js, RATELIMIT_STREAMS)``): they need nats-server 2.12 or newer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from . import subjects

__all__ = [
    "RATELIMIT_DAY_MAX_AGE_S",
    "RATELIMIT_MINUTE_MAX_AGE_S",
    "RATELIMIT_STREAMS",
    "STREAMS",
    "TRANSCRIPTS_MAX_AGE_S",
    "USAGE_MAX_AGE_S",
    "close",
    "connect",
    "ensure_streams",
    "serve_health",
]

log = logging.getLogger(__name__)

_DAY_S = 86_400.0

#: How long a usage event stays in its stream. Billing reads it within seconds, so
#: this is the horizon of ``billing reconcile`` and the longest billing may be down
#: without losing events. Size the NATS volume for it: about 0.72 KB per request (docs/operations.md, Sizing).
USAGE_MAX_AGE_S = 7 * _DAY_S
#: Transcripts carry user content: kept only as long as sessions may be down.
TRANSCRIPTS_MAX_AGE_S = 3 * _DAY_S

#: Every JetStream stream the gateway uses, declared by whoever starts first.
#: Retention is by age only: a size or count limit would drop events billing has not
#: read yet (or refuse new ones) the moment traffic outgrows it.
STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.USAGE_STREAM,
        subjects=subjects.USAGE_SUBJECTS,
        max_age=USAGE_MAX_AGE_S,
        duplicate_window=120.0,  # seconds: a re-publish with the same Nats-Msg-Id is dropped
    ),
    StreamConfig(
        name=subjects.TRANSCRIPTS_STREAM,
        subjects=subjects.TRANSCRIPTS_SUBJECTS,
        max_age=TRANSCRIPTS_MAX_AGE_S,
        duplicate_window=120.0,
    ),
)

#: A window's counter is only read while its window lasts; it is kept a little longer
#: so a late correction (token settle) still lands, then aged out by the server.
RATELIMIT_MINUTE_MAX_AGE_S = 180.0
RATELIMIT_DAY_MAX_AGE_S = _DAY_S + 3_600.0

#: The rate limiter's counters (``edge.pipeline.ratelimit_store``): JetStream counter
#: streams (ADR-49; ``Nats-Incr`` adds atomically and answers the new total), one
#: subject per (scope, kind, window), only its latest total kept. Message TTLs are
#: not allowed on counter streams, hence one stream per window length, each aged out
#: by ``max_age``. File storage: a day's counts survive a nats-server restart.
RATELIMIT_STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.RATELIMIT_MINUTE_STREAM,
        subjects=[f"{subjects.RATELIMIT_MINUTE_PREFIX}.>"],
        max_age=RATELIMIT_MINUTE_MAX_AGE_S,
        max_msgs_per_subject=1,
        allow_msg_counter=True,
        allow_direct=True,
    ),
    StreamConfig(
        name=subjects.RATELIMIT_DAY_STREAM,
        subjects=[f"{subjects.RATELIMIT_DAY_PREFIX}.>"],
        max_age=RATELIMIT_DAY_MAX_AGE_S,
        max_msgs_per_subject=1,
        allow_msg_counter=True,
        allow_direct=True,
    ),
)


_DRAIN_TIMEOUT_S = 5.0


async def connect(url: str, *, name: str, first_connect_timeout_s: float = 10.0) -> Client:
    """Connect to NATS; the first connect must succeed within ``first_connect_timeout_s``.

    Once connected, the client reconnects forever (a NATS restart must not kill
    a service). nats-py applies that same retry policy to the first connect, so
    without the deadline a service started with NATS down would hang in start-up
    instead of failing visibly.

    ``drain_timeout`` bounds ``Client.drain`` at shutdown. nats-py's default is
    30 s, three times the 10 s stop grace (``devtools.stack``, the pods'
    terminationGracePeriod): a subscription whose queue never empties (a handler
    stuck on a busy database) made billing's whole drain wait it out and the
    process get SIGKILLed. 5 s leaves the pull loop's last fetch (1 s), the
    batch in flight and the engine dispose room inside the grace.
    """
    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=url.split(","),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                drain_timeout=_DRAIN_TIMEOUT_S,
            ),
            first_connect_timeout_s,
        )
    except TimeoutError as exc:
        raise ConnectionError(
            f"NATS at {url} did not answer within {first_connect_timeout_s:g} s"
        ) from exc


async def close(nc: Client) -> None:
    """Drain ``nc`` at shutdown (pending publishes and acks go out, subscriptions finish),
    or close it when NATS is unreachable, where nats-py's ``drain`` raises
    ``ConnectionReconnectingError`` and the process would exit 1 after a clean stop."""
    if nc.is_connected:
        await nc.drain()
    elif not nc.is_closed:
        await nc.close()


async def ensure_streams(
    js: JetStreamContext, streams: Sequence[StreamConfig] = STREAMS, *, replicas: int = 1
) -> None:
    """Create or update every stream in ``streams`` (default ``STREAMS``; idempotent).

    ``replicas`` is the stream replication factor (``NATS_STREAM_REPLICAS``): 1 on
    a single server, 3 on a 3-node cluster. Every service must pass the same value;
    a JetStream cluster can scale an existing stream's replicas up or down in place.
    """
    for declared in streams:
        config = dataclasses.replace(declared, num_replicas=replicas)
        assert config.name is not None  # every declared stream is named
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
        else:
            await js.update_stream(config)


async def serve_health(
    nc: Client, service: str, check: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Answer ``health.<service>`` requests with ``{"service", "status"}``.

    ``check`` decides the status (``ok`` or ``degraded``); without it the
    service is healthy whenever it can answer.
    """

    async def handler(msg: Msg) -> None:
        healthy = True if check is None else await check()
        status = "ok" if healthy else "degraded"
        await msg.respond(orjson.dumps({"service": service, "status": status}))

    await nc.subscribe(subjects.health_subject(service), cb=handler)
