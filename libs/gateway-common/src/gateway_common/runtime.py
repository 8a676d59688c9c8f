"""Process runtime shared by the NATS-facing services: billing, sessions, rag.

A service process is::

    python -m <svc>            command_line -> serve -> run(settings, stop)
    python -m <svc> migrate    command_line -> gateway_common.db.migrate

``serve`` sets up telemetry, installs SIGTERM/SIGINT handlers that set a
``stop`` event, and runs the service's async ``run`` on uvloop. ``run`` opens
a ``Runtime`` (``open_runtime``), does its work until ``stop`` is set, and
returns; the runtime's exit stack then unwinds in reverse order of creation:

    open:   migrate (or wait for the Job's) -> engine -> NATS + streams -> health
            responder -> probes + /metrics -> readiness watch; then the service
            subscribes its responders and consumers and calls ``Runtime.serving``
    close:  readiness false -> probes + /metrics -> NATS drain (subscriptions
            finish) -> engine dispose

``pull_batches`` is the JetStream pull-consumer loop: fetch a batch, hand it
to a handler that acks/naks/terms every message of it, stop between batches
(billing writes a batch in one transaction). ``pull_loop`` runs on it for
handlers of one message at a time, stopping between messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import nats.errors
import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from . import db, lean, migrate_proc, telemetry
from .metrics import ConsumerMetrics, DbPoolCollector
from .nats import STREAMS, connect, ensure_streams, serve_health
from .nats import close as close_nats
from .probes import ProbeServer, Readiness
from .settings import BaseServiceSettings

__all__ = [
    "Runtime",
    "command_line",
    "ensure_pull_consumer",
    "open_runtime",
    "pull_batches",
    "pull_loop",
    "serve",
]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseServiceSettings)
MessageHandler = Callable[[Msg], Awaitable[None]]
BatchHandler = Callable[[list[Msg]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Runtime:
    """The long-lived clients of one service process, valid inside ``open_runtime``.

    Readiness (``/readyz``) stays false, reason ``starting``,
    until the service calls ``serving()``: it must do so only once every
    responder and consumer it runs is subscribed, so a ready service never
    leaves a request without responders (``NoRespondersError``).
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    nc: Client
    js: JetStreamContext
    registry: CollectorRegistry
    #: JetStream lag and redeliveries; give it to ``pull_batches`` / ``pull_loop``.
    consumer_metrics: ConsumerMetrics
    subscribed: asyncio.Event

    async def serving(self) -> None:
        """Every responder and consumer is subscribed: readiness may turn true.

        Flushes first: once the server has answered the PING, it has processed
        every SUB sent before it, so a request sent after readiness finds them.
        """
        await self.nc.flush()
        self.subscribed.set()


@asynccontextmanager
async def open_runtime(
    settings: BaseServiceSettings, *, service: str, migrations_dir: Path
) -> AsyncIterator[Runtime]:
    """Migrate, connect, answer ``health.<service>``, serve probes and /metrics; undo on exit.

    Migrations run first (idempotent; a no-op at head) so a service never
    consumes into a schema it does not know; with ``migrate_on_start`` false
    (a migrate Job runs them once per rollout) the service waits for the schema
    to reach head instead. Streams are declared with ``nats_stream_replicas``.
    The health responder reports ``degraded`` while the database does not
    answer; ``/readyz`` on the metrics port is 503 until the service has called
    ``Runtime.serving``, while the database or NATS is lost, and from the first
    moment of shutdown. On exit
    NATS is drained (in-flight callbacks finish, then the connection closes; closed at
    once when NATS is unreachable, ``gateway_common.nats.close``)
    before the engine is disposed, so nothing still running can need the database.
    """
    url = settings.resolved_database_url()
    # Alembic runs in a child process (migrate_proc): this one never imports it.
    if settings.migrate_on_start:
        await migrate_proc.migrate(url=url, migrations_dir=migrations_dir, service=service)
    else:
        await migrate_proc.wait_for_head(
            url=url,
            migrations_dir=migrations_dir,
            service=service,
            timeout_s=settings.migrate_wait_s,
        )
    readiness = Readiness()
    subscribed = asyncio.Event()
    async with AsyncExitStack() as stack:
        engine = db.create_engine(url)
        stack.push_async_callback(engine.dispose)
        nc = await connect(settings.nats_url, name=service)
        stack.push_async_callback(close_nats, nc)
        js = nc.jetstream()
        await ensure_streams(js, replicas=settings.nats_stream_replicas)

        async def database_ok() -> bool:
            return await db.ping(engine)

        await serve_health(nc, service, check=database_ok)
        registry = CollectorRegistry()
        registry.register(DbPoolCollector(engine, service=service))
        consumer_metrics = ConsumerMetrics(registry)
        lag = asyncio.create_task(consumer_metrics.watch(js, [s.name or "" for s in STREAMS]))
        stack.push_async_callback(_cancel, lag)
        if settings.metrics_port > 0:
            probes = ProbeServer(
                host=settings.metrics_host,
                port=settings.metrics_port,
                registry=registry,
                readiness=readiness,
            )
            stack.callback(probes.close)
        watcher = asyncio.create_task(_watch_readiness(readiness, subscribed, nc, database_ok))
        stack.push_async_callback(_stop_watch, watcher, readiness)
        log.info("%s started", service)
        lean.release_free_memory()
        yield Runtime(
            engine=engine,
            sessions=db.make_sessionmaker(engine),
            nc=nc,
            js=js,
            registry=registry,
            consumer_metrics=consumer_metrics,
            subscribed=subscribed,
        )
    log.info("%s stopped", service)


#: Seconds between readiness checks of the database and NATS.
_READINESS_INTERVAL_S = 2.0


async def _watch_readiness(
    readiness: Readiness,
    subscribed: asyncio.Event,
    nc: Client,
    database_ok: Callable[[], Awaitable[bool]],
) -> None:
    """Once the service is ``subscribed``, keep ``readiness`` true while NATS is
    connected and the database answers (``starting`` until then)."""
    await subscribed.wait()
    while True:
        if not nc.is_connected:
            readiness.set(False, "nats")
        elif not await database_ok():
            readiness.set(False, "database")
        else:
            readiness.set(True)
        await asyncio.sleep(_READINESS_INTERVAL_S)


async def _stop_watch(watcher: asyncio.Task[None], readiness: Readiness) -> None:
    """First step of shutdown: not ready any more, then stop watching."""
    readiness.set(False, "stopping")
    await _cancel(watcher)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def ensure_pull_consumer(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    filter_subject: str,
    ack_wait_s: float = 30.0,
    max_deliver: int = 10_000,
) -> None:
    """Declare a durable pull consumer, creating it or updating it to this config.

    Uses the named-consumer create API without an action, which the server
    treats as create-or-update, so every replica may call it at start-up.
    Acks are explicit: a message counts as handled only once the handler
    acks it (after its commit). ``max_deliver`` is large so hours of
    transient failures with short nak delays are ridden out, yet bounded so
    a bug cannot spin one message forever (the server then emits a
    max-deliveries advisory and the message stays in the stream).
    """
    await js.add_consumer(
        stream,
        ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=filter_subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
        ),
    )


async def pull_batches(
    sub: JetStreamContext.PullSubscription,
    handle_batch: BatchHandler,
    *,
    stop: asyncio.Event,
    batch_size: int,
    fetch_timeout_s: float = 1.0,
    linger_s: float = 0.0,
    metrics: ConsumerMetrics | None = None,
) -> None:
    """Fetch up to ``batch_size`` messages at a time and hand each batch over, until ``stop``.

    A fetch returns at once with what the consumer has ready (up to
    ``batch_size``); only an idle consumer waits, up to ``fetch_timeout_s``.
    After a batch smaller than ``batch_size`` the loop lingers ``linger_s``
    before the next fetch, so that under a steady light load messages gather
    into batches instead of costing a transaction each; the price is up to
    ``linger_s`` more delay per message.
    ``handle_batch`` owns the fate of every message it is given (ack, nak or
    term) and must not raise for a per-message problem. ``stop`` is checked
    between batches, so the batch in flight always finishes. Returns within
    about ``fetch_timeout_s`` of ``stop``, having unsubscribed ``sub``:
    nats-py's drain would otherwise wait out its whole timeout on a pull
    subscription (its fetch never marks queue items done). ``metrics`` (the
    runtime's) counts the redeliveries among the fetched messages.
    """
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch_size, timeout=fetch_timeout_s)
            except TimeoutError:
                # nats-py raises its own TimeoutError on an empty fetch, but a bare
                # asyncio.TimeoutError from some of its internal waits: both mean "nothing yet".
                continue
            except nats.errors.ConnectionClosedError:
                raise
            except nats.errors.Error as exc:
                # The consumer has no leader for a moment (a JetStream node restarts: 503
                # ServiceUnavailable) or the connection is reconnecting: wait, fetch again.
                log.warning("fetch failed, retrying: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), fetch_timeout_s)
                continue
            if metrics is not None:
                metrics.observe_batch(msgs)
            await handle_batch(msgs)
            if linger_s and len(msgs) < batch_size and not stop.is_set():
                await asyncio.sleep(linger_s)
    finally:
        await sub.unsubscribe()


async def pull_loop(
    sub: JetStreamContext.PullSubscription,
    handle: MessageHandler,
    *,
    stop: asyncio.Event,
    batch_size: int,
    fetch_timeout_s: float = 1.0,
    metrics: ConsumerMetrics | None = None,
) -> None:
    """``pull_batches`` handling one message at a time, ``stop`` checked between messages.

    ``handle`` owns the fate of each message (ack, nak or term) and must not
    raise for a per-message problem. Once ``stop`` is set the rest of a
    fetched batch is nak'ed without delay, so another replica gets it at once
    instead of after the ack wait.
    """

    async def one_by_one(msgs: list[Msg]) -> None:
        for index, msg in enumerate(msgs):
            if stop.is_set():
                for unhandled in msgs[index:]:
                    await unhandled.nak()
                return
            await handle(msg)

    await pull_batches(
        sub,
        one_by_one,
        stop=stop,
        batch_size=batch_size,
        fetch_timeout_s=fetch_timeout_s,
        metrics=metrics,
    )


def serve(settings: S, run: Callable[[S, asyncio.Event], Awaitable[None]]) -> None:
    """Run ``run(settings, stop)`` on uvloop until it returns; SIGTERM/SIGINT set ``stop``.

    Telemetry is process-wide, so it is set up here rather than in ``run``
    (which tests call in-process).
    """
    provider = telemetry.setup(
        service=settings.service_name,
        log_level=settings.log_level,
        otel_endpoint=settings.otel_endpoint,
        log_prompts=settings.log_prompts,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    finally:
        telemetry.shutdown(provider)


def command_line(
    argv: Sequence[str],
    *,
    service: str,
    settings_factory: Callable[[], S],
    migrations_dir: Path,
    run: Callable[[S, asyncio.Event], Awaitable[None]],
) -> int:
    """``python -m <service> [serve|migrate]``: the process entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog=f"python -m {service}")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "migrate"),
        default="serve",
        help="serve (default): run the service; migrate: upgrade its tables to head",
    )
    args = parser.parse_args(list(argv))
    settings = settings_factory()
    if args.command == "migrate":
        telemetry.setup_logging(
            service=settings.service_name, log_level=settings.log_level, log_prompts=False
        )
        db.migrate(
            url=settings.resolved_database_url(), migrations_dir=migrations_dir, service=service
        )
    else:
        serve(settings, run)
    return 0
