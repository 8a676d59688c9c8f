"""A JetStream cluster of nats-server processes on loopback, for drills (issue 19, d04).

``NatsCluster`` writes one config file per node (``deploy/k8s/base/nats.conf``'s
shape: JetStream with its own store dir and ``sync_interval: always``, a
``cluster`` block routing to every node), starts the nodes in their own process
groups (``devtools.procs.Child``) and waits until each one's ``/healthz``
answers 200 (nats-server's health check: JetStream enabled, the meta leader
known, every stream and consumer replica current). ``urls`` is the
comma-separated client URL list services take as ``NATS_URL``.

Faults: ``restart(i)`` stops node ``i`` (SIGKILL by default, SIGTERM for a
clean shutdown) and starts it again on the same ports and store, or with its
store wiped (``wipe=True``: a lost disk; the node must catch up from the
others); ``restart_all`` does that to every node at once. ``stream_state(i,
name)`` is node ``i``'s own replica of a stream (its ``/jsz``), to see a wiped
node catch up. Logs: ``<data_dir>/logs/nats-<i>.log`` (a
restarted node's ``nats-<i>.<n>.log``, so the earlier run's log is kept).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from devtools.ports import free_ports
from devtools.procs import Child
from devtools.stack import StackError, nats_server_binary

__all__ = ["NatsCluster", "NodePorts", "node_config"]

_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class NodePorts:
    """One node's loopback ports: clients, HTTP monitor, cluster routes."""

    client: int
    monitor: int
    cluster: int


def node_config(
    index: int, nodes: list[NodePorts], store_dir: Path, *, sync_always: bool = True
) -> str:
    """The config file of node ``index`` of ``nodes`` (every node routes to every other)."""
    me = nodes[index]
    routes = "\n".join(f"    nats://127.0.0.1:{n.cluster}" for n in nodes)
    sync = "  sync_interval: always\n" if sync_always else ""
    return (
        f"server_name: n{index}\n"
        f"listen: 127.0.0.1:{me.client}\n"
        f"http: 127.0.0.1:{me.monitor}\n"
        "jetstream {\n"
        f"  store_dir: {store_dir}\n"
        f"{sync}"
        "  max_memory_store: 64MB\n"
        "}\n"
        "cluster {\n"
        "  name: drill\n"
        f"  listen: 127.0.0.1:{me.cluster}\n"
        f"  routes: [\n{routes}\n  ]\n"
        "  connect_retries: 120\n"
        "}\n"
    )


class NatsCluster:
    """``size`` nats-server nodes forming one JetStream cluster; a context manager."""

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        *,
        sync_always: bool = True,
        memory_limit: str = "64MiB",
        ready_timeout_s: float = 60.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        ports = free_ports(3 * size)
        self.nodes = [NodePorts(*ports[3 * i : 3 * i + 3]) for i in range(size)]
        self._sync_always = sync_always
        self._env = {**os.environ, "GOMEMLIMIT": memory_limit}
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._children: list[Child | None] = [None] * size
        self._runs = [0] * size

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (``NATS_URL``)."""
        return ",".join(f"nats://127.0.0.1:{n.client}" for n in self.nodes)

    def __enter__(self) -> NatsCluster:
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
        """Start every node and return once each one is healthy; stop them all on failure."""
        try:
            for index in range(len(self.nodes)):
                self._spawn(index)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after the grace). Idempotent."""
        for child in self._children:
            if child is not None:
                child.stop(self._stop_grace_s)

    def kill(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to node ``index`` and wait until it has exited."""
        child = self._children[index]
        assert child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        if not child.wait(self._stop_grace_s):
            child.stop(0)

    def restart(
        self, index: int, sig: signal.Signals = signal.SIGKILL, *, wipe: bool = False
    ) -> None:
        """Stop node ``index`` with ``sig``, start it again on the same ports; not waited.

        ``wipe``: its JetStream store is deleted in between, so it comes back with
        no stream data, no Raft log and no meta state, and must catch up from the others.
        """
        self.kill(index, sig)
        if wipe:
            shutil.rmtree(self._store(index), ignore_errors=True)
        self._spawn(index)

    def restart_all(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop every node with ``sig``, then start them all again; not waited."""
        for index in range(len(self.nodes)):
            self.kill(index, sig)
        for index in range(len(self.nodes)):
            self._spawn(index)

    def healthy(self, index: int) -> bool:
        """Whether node ``index`` answers ``/healthz`` 200 within a second."""
        try:
            url = f"http://127.0.0.1:{self.nodes[index].monitor}/healthz"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self, timeout_s: float | None = None) -> float:
        """Block until every node is healthy; the seconds it took. Raises ``StackError``."""
        started = time.monotonic()
        deadline = started + (timeout_s or self._ready_timeout_s)
        pending = set(range(len(self.nodes)))
        while pending:
            pending = {i for i in pending if not self.healthy(i)}
            for i, child in enumerate(self._children):
                if child is not None and child.returncode is not None:
                    raise StackError(f"nats node {i} exited:\n{child.tail()}")
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- node {i}:\n{self._tail(i)}" for i in sorted(pending))
                raise StackError(f"nats nodes {sorted(pending)} not healthy\n{tails}")
            if pending:
                time.sleep(_POLL_S)
        return time.monotonic() - started

    def stream_state(self, index: int, stream: str) -> dict[str, Any] | None:
        """Node ``index``'s own replica of ``stream`` (``state`` of its ``/jsz``), or None
        while the node does not answer or holds no replica of it."""
        url = f"http://127.0.0.1:{self.nodes[index].monitor}/jsz"
        try:
            answer = httpx.get(url, params={"accounts": 1, "streams": 1}, timeout=1.0)
        except httpx.TransportError:
            return None
        if answer.status_code != 200:
            return None
        for account in answer.json().get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    state: dict[str, Any] = detail.get("state") or {}
                    return state
        return None

    def _store(self, index: int) -> Path:
        return self.data_dir / f"nats-{index}"

    def _tail(self, index: int) -> str:
        child = self._children[index]
        return child.tail(20) if child is not None else ""

    def _spawn(self, index: int) -> None:
        conf = self.data_dir / f"nats-{index}.conf"
        store = self._store(index)
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(node_config(index, self.nodes, store, sync_always=self._sync_always))
        self._runs[index] += 1
        suffix = "" if self._runs[index] == 1 else f".{self._runs[index]}"
        self._children[index] = Child(
            f"nats-{index}",
            [str(nats_server_binary()), "-c", str(conf)],
            env=self._env,
            cwd=self.data_dir,
            log_path=self.log_dir / f"nats-{index}{suffix}.log",
        )
