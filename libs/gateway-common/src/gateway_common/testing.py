"""Test support shared by the services' test suites (real infrastructure only).

Nothing here fakes one of our services: it starts a real nats-server, makes
a real throwaway PostgreSQL database, runs real service processes.

    nats_server(dir)          a JetStream nats-server on a free 127.0.0.1 port -> its URL
    throwaway_postgres(name)  CREATE DATABASE ... / DROP DATABASE ... -> async URL
    schema_drift(url, md)     Alembic's diff between a migrated database and the models
    service_process(mod, env) ``python -m <mod>``, SIGTERM'ed on exit unless already gone
    wait_for(probe)           poll an async probe until it returns non-None, with a deadline
    health_reply(nc, svc)     one ``health.<svc>`` request -> the decoded reply, None if unanswered
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_POSTGRES_ADMIN_URL",
    "PostgresUnavailable",
    "free_port",
    "health_reply",
    "nats_server",
    "schema_drift",
    "service_process",
    "storage_fixtures",
    "throwaway_postgres",
    "wait_for",
]

T = TypeVar("T")

#: The machine's PostgreSQL (trust auth); throwaway databases are created from here.
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL answers at the admin URL; callers skip their PostgreSQL tests."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def nats_server(store_dir: Path, *, timeout_s: float = 10.0) -> Iterator[str]:
    """Run ``nats-server -js`` (from the venv) until exit; yields ``nats://127.0.0.1:<port>``.

    Returns once the server accepts TCP connections; raises ``TimeoutError``
    if it does not within ``timeout_s``. Never uses 4222 (the machine's own).
    """
    binary = Path(sys.executable).parent / "nats-server"
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-js", "-sd", str(store_dir), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nats-server not accepting on {port}") from None
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def throwaway_postgres(
    name_prefix: str, *, admin_url: str = DEFAULT_POSTGRES_ADMIN_URL
) -> Iterator[str]:
    """Create a uniquely named database, yield its async (psycopg) URL, drop it on exit.

    Raises ``PostgresUnavailable`` when the server cannot be reached.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{name_prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"PostgreSQL unreachable at {admin_url}: {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_drift(url: str, metadata: Any) -> list[Any]:
    """Differences Alembic autogenerate finds between the database at ``url`` and ``metadata``.

    Empty when the hand-written migrations produce exactly the models' schema.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from gateway_common.db import sync_url

    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: (
                        not (kind == "table" and (name or "").startswith("alembic_version"))
                    ),
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


@contextmanager
def service_process(
    module: str, env: Mapping[str, str], *args: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m <module> *args`` with exactly ``env`` (plus PATH); output to ``log_path``.

    The working directory is the caller's (the repo root under pytest). On
    exit a still-running process gets SIGTERM and up to 15 s to stop; the
    caller asserts on ``returncode`` after its own ``wait``.
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 10.0, interval_s: float = 0.05
) -> T:
    """Await ``probe()`` until it returns something other than None; ``TimeoutError`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def health_reply(nc: Any, service: str, *, timeout_s: float = 0.5) -> dict[str, Any] | None:
    """Ask ``health.<service>`` once; the decoded reply, or None when nobody answers yet."""
    import orjson
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout

    from gateway_common.subjects import health_subject

    try:
        reply = await nc.request(health_subject(service), b"", timeout=timeout_s)
    except (NoRespondersError, NatsTimeout):
        return None
    return dict(orjson.loads(reply.data))


def storage_fixtures(service: str) -> tuple[Any, Any, Any]:
    """The pytest fixtures ``(nats_url, postgres_url, db_url)`` of a service's test suite.

    Assign them in the service's ``conftest.py``
    (``nats_url, postgres_url, db_url = storage_fixtures("rag")``): ``nats_url`` is a
    real JetStream nats-server per test, ``postgres_url`` an empty throwaway database
    per session (skipped, with the reason, when PostgreSQL is unreachable), and
    ``db_url`` an empty database per test on each backend (``sqlite``, ``postgresql``).
    pytest is imported here, not at module level: only test suites call this.
    """
    import pytest

    @pytest.fixture
    def nats_url(tmp_path: Path) -> Iterator[str]:
        with nats_server(tmp_path / "nats") as url:
            yield url

    @pytest.fixture(scope="session")
    def postgres_url() -> Iterator[str]:
        try:
            with throwaway_postgres(f"switchyard_{service}_test") as url:
                yield url
        except PostgresUnavailable as exc:
            pytest.skip(f"PostgreSQL tests skipped: {exc}")

    @pytest.fixture(params=["sqlite", "postgresql"])
    def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        if request.param == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}"
        return str(request.getfixturevalue("postgres_url"))

    return nats_url, postgres_url, db_url
