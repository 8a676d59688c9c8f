"""Switchyard as the benchmark runs it: the whole local stack, in front of the fake upstream.

``devtools.stack.Stack`` starts nats-server (JetStream), edge, router, billing,
sessions and rag exactly as ``make run`` does, with SQLite under
``bench/.work/switchyard`` (wiped first, so the ledger holds this run only) and
``bench/switchyard/catalog.yaml`` pointing models ``bench-chat`` and
``bench-stream`` at the upstream. Every request therefore also publishes a usage
event that billing prices and writes to the ledger.

The stack also runs the dev fake provider, which no request reaches; it is not
part of the measured process trees.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
from types import TracebackType

from devtools.ports import PortPlan
from devtools.stack import Stack, StackConfig

from .layout import BenchLayout, render
from .target import TargetError

__all__ = ["Switchyard"]

#: Stack children that are not part of the gateway.
_NOT_MEASURED = frozenset({"fakeprovider"})


class Switchyard:
    """All five services and NATS, on free loopback ports."""

    name = "switchyard"

    def __init__(
        self,
        layout: BenchLayout,
        *,
        upstream_url: str,
        api_key: str,
        catalog: str = "switchyard/catalog.yaml",
    ) -> None:
        self._layout = layout
        self._catalog = catalog
        self._upstream = upstream_url
        self._api_key = api_key
        self._stack: Stack | None = None

    @property
    def stack(self) -> Stack:
        """The running stack."""
        if self._stack is None:
            raise TargetError("Switchyard is not running")
        return self._stack

    def url(self, *, stream: bool) -> str:
        return f"{self.stack.base_url}/v1/chat/completions"

    def model(self, *, stream: bool) -> str:
        return "bench-stream" if stream else "bench-chat"

    def process_roots(self) -> dict[str, int]:
        return {
            name: child.pid
            for name, child in self.stack.children.items()
            if name not in _NOT_MEASURED
        }

    def ledger_entries(self) -> int:
        """Rows in billing's ledger (one per billed request)."""
        path = self.stack.data_dir / "billing.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (count,) = db.execute("select count(*) from ledger_entries").fetchone()
        return int(count)

    def __enter__(self) -> Switchyard:
        data_dir = self._layout.work / "switchyard"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        catalog = data_dir / "catalog.yaml"
        catalog.write_text(
            render(
                self._layout.input(self._catalog).read_text(),
                {"UPSTREAM": self._upstream},
            )
        )
        self._stack = Stack(
            StackConfig(
                data_dir=data_dir,
                ports=PortPlan.free(),
                catalog_path=catalog,
                api_key=self._api_key,
                admin_token="sy-admin-" + secrets.token_urlsafe(16),
            )
        )
        self._stack.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            self._stack.stop()
