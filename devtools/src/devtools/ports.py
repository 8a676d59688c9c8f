"""Which TCP ports a local stack uses: the fixed ``make run`` plan or free ones for tests.

Every port is on 127.0.0.1. Port 4222 (the machine's own NATS) is never handed out.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PortPlan", "free_port", "free_ports", "port_in_use"]

_RESERVED = frozenset({4222})


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open while choosing)."""
    held: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in _RESERVED:
                ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    """One port that was free a moment ago (the usual race applies: bind it soon)."""
    return free_ports(1)[0]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port``.

    Binds with ``SO_REUSEADDR`` as the servers themselves do, so sockets left in
    TIME_WAIT by a previous run do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class PortPlan:
    """The ports of one stack. Field names are the process names used in logs and errors."""

    edge: int
    router: int
    fake_provider: int
    nats: int
    nats_monitor: int
    router_metrics: int
    billing_metrics: int
    sessions_metrics: int
    rag_metrics: int

    @classmethod
    def defaults(cls, env: Mapping[str, str] | None = None) -> PortPlan:
        """The ``make run`` plan (docs/architecture.md), each overridable by its env variable."""
        env = env or {}

        def port(name: str, default: int) -> int:
            return int(env.get(name) or default)

        return cls(
            edge=port("GATEWAY_PORT", 8080),
            router=port("ROUTER_PORT", 50051),
            fake_provider=port("FAKE_PROVIDER_PORT", 8090),
            nats=port("EMBEDDED_NATS_PORT", 14222),
            nats_monitor=port("EMBEDDED_NATS_MONITOR_PORT", 18222),
            router_metrics=port("ROUTER_METRICS_PORT", 9101),
            billing_metrics=port("BILLING_METRICS_PORT", 9102),
            sessions_metrics=port("SESSIONS_METRICS_PORT", 9103),
            rag_metrics=port("RAG_METRICS_PORT", 9104),
        )

    @classmethod
    def free(cls) -> PortPlan:
        """A plan of distinct free ports, for a test stack next to anything else running."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names)), strict=True)))

    def as_dict(self) -> dict[str, int]:
        """``{name: port}``."""
        return dataclasses.asdict(self)
