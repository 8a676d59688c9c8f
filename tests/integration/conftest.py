"""Integration fixtures: real stacks (nats-server, the five services, the fake provider).

``stack`` is parametrized over the two storage backends (ids ``sqlite`` and
``postgres``), so every test that uses it, directly or through ``api_key``,
``base_url``, ``openai_client`` or ``fake_provider_url``, runs on both. Each
backend's stack is started once per session on free ports with its own data dir;
pytest groups the tests by backend. ``postgres_stack`` runs on a throwaway
database ``sy_it_<random>`` created on the local server and dropped at the end;
when that server is unreachable the postgres half is skipped, and the terminal
summary says which backends ran and why one was skipped.

A catalog at ``tests/integration/catalog.yaml``, if present, replaces the
repository's ``config/catalog.yaml``; either way its dev fake provider URLs
(127.0.0.1:8090) are moved to the stack's fake provider.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import openai
import psycopg
import pytest
from psycopg import sql

from devtools.stack import Stack, throwaway_config

_PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
_PG_ADMIN_DB = "test"
_CATALOG = Path(__file__).with_name("catalog.yaml")
_BACKENDS = pytest.StashKey[dict[str, str]]()
#: Shorter timers than production so tests of redelivery and hot reload finish quickly:
#: JetStream redelivers a crashed billing's unacked messages after 5 s instead of 30 s,
#: and the router notices a rewritten catalog within half a second.
_FAST_TIMERS = {
    "billing": {"BILLING_ACK_WAIT_S": "5"},
    "router": {"ROUTER_CATALOG_POLL_S": "0.5"},
    # One rag process: only a restarted one reads a lease, so a short one is safe and lets
    # test_rag_sigkill.py's restarted rag requeue the killed job at once.
    "rag": {"RAG_INGEST_LEASE_S": "1"},
}


def _note(config: pytest.Config, backend: str, outcome: str) -> None:
    config.stash.setdefault(_BACKENDS, {})[backend] = outcome


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each backend's tests on one xdist worker, so each worker starts one stack.

    ``make test-integration`` runs ``-n 2 --dist loadgroup``: the SQLite half and the
    PostgreSQL half run side by side, and tests without a backend fill in wherever a
    worker is free. Without xdist the mark is inert.
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("stack") if callspec is not None else None
        if backend is not None:
            item.add_marker(pytest.mark.xdist_group(backend))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the backends it ran to the controller's summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["backends"] = session.config.stash.get(_BACKENDS, {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the xdist controller, gather what each worker ran (see ``pytest_sessionfinish``)."""
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    for backend, outcome in node.workeroutput.get("backends", {}).items():  # type: ignore[attr-defined]
        if outcome.startswith("ran") or backend not in config.stash.get(_BACKENDS, {}):
            _note(config, backend, outcome)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Say which storage backends the integration tests ran on."""
    backends = config.stash.get(_BACKENDS, {})
    if not backends:
        return
    terminalreporter.write_sep("-", "integration backends")
    for backend in ("sqlite", "postgres"):
        terminalreporter.write_line(f"{backend}: {backends.get(backend, 'not requested')}")


def _start(data_dir: Path, database_url: str | None) -> Stack:
    stack = Stack(
        throwaway_config(
            data_dir,
            database_url=database_url,
            catalog=_CATALOG if _CATALOG.exists() else None,
            label="it",
            extra_env=_FAST_TIMERS,
        )
    )
    stack.start()
    return stack


@pytest.fixture(scope="session")
def sqlite_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack on SQLite files under a temporary data dir."""
    stack = _start(tmp_path_factory.mktemp("stack-sqlite"), None)
    _note(request.config, "sqlite", "ran")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this session, dropped afterwards."""
    name = f"sy_it_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(f"{_PG_SERVER}/{_PG_ADMIN_DB}", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {_PG_SERVER} unreachable: {' '.join(str(exc).split())}"
        _note(request.config, "postgres", f"skipped ({reason})")
        pytest.skip(reason)
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{_PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{_PG_SERVER}/{_PG_ADMIN_DB}", autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[Stack]:
    """A stack whose services all use the throwaway PostgreSQL database."""
    stack = _start(tmp_path_factory.mktemp("stack-postgres"), postgres_url)
    _note(request.config, "postgres", f"ran (database {postgres_url.rsplit('/', 1)[1]})")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def stack(request: pytest.FixtureRequest) -> Stack:
    """The running stack of the backend under test."""
    backend: Stack = request.getfixturevalue(f"{request.param}_stack")
    return backend


@pytest.fixture
def api_key(stack: Stack) -> str:
    """The dev API key (project ``default``, all scopes)."""
    assert stack.config.api_key is not None
    return stack.config.api_key


@pytest.fixture
def base_url(stack: Stack) -> str:
    """The edge's origin, e.g. ``http://127.0.0.1:PORT`` (OpenAI routes under ``/v1``)."""
    return stack.base_url


@pytest.fixture
def fake_provider_url(stack: Stack) -> str:
    """The fake provider's origin (``/_fake/requests`` shows what reached it)."""
    return stack.fake_provider_url


@pytest.fixture
def openai_client(base_url: str, api_key: str) -> Iterator[openai.OpenAI]:
    """The official OpenAI SDK pointed at the gateway, without SDK retries."""
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)
    try:
        yield client
    finally:
        client.close()
