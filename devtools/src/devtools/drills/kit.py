"""The drills' shared kit: a stack with the drills' catalog, traffic helpers, ledger queries.

``DrillStack`` starts a whole ``devtools.stack.Stack`` (nats-server, the five
services, the fake provider) on free ports in a temporary data dir, on SQLite
unless a database URL is given, with ``CATALOG``: ``mock-chat`` on the healthy
fake and ``drill-break`` whose streams the fake cuts after ``BREAK_AFTER`` SSE
events (a connection reset mid-stream). A drill takes an optional running
``DrillStack`` so the short forms in ``make test`` share one.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from devtools.ports import PortPlan
from devtools.stack import Stack, StackConfig, render_catalog
from gateway_common.db import sync_url

__all__ = ["BREAK_AFTER", "CATALOG", "DrillStack", "drill_stack", "ledger_rows"]

#: SSE events the fake sends on ``drill-break`` before it resets the connection.
BREAK_AFTER = 3
CATALOG = f"""\
version: 1
# d09 cuts every stream on purpose: a breaker that opened on them would refuse the
# rest before their first chunk, which is d08's subject, not d09's.
resilience:
  breaker: {{consecutive_failures: 100000, cooldown_s: 1}}
providers:
  fake:
    kind: openai
    base_url: http://127.0.0.1:8090/v1
    connect_timeout_s: 2
    read_timeout_s: 10
  drill-break:
    kind: openai
    base_url: http://127.0.0.1:8090/fault/break_after={BREAK_AFTER}/v1
    connect_timeout_s: 2
    read_timeout_s: 10
models:
  mock-chat:
    deployments:
      - provider: fake
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  drill-break:
    deployments:
      - provider: drill-break
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
"""


class DrillStack:
    """A running stack for drills: ``stack``, its dev ``api_key``, the edge's ``base_url``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        assert stack.config.api_key is not None
        self.api_key: str = stack.config.api_key

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@contextlib.contextmanager
def drill_stack(database_url: str | None = None) -> Iterator[DrillStack]:
    """Start a drill stack, yield it, stop every process and remove its data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix="sy-drill-"))
    ports = PortPlan.free()
    catalog = data_dir / "catalog.yaml"
    source = data_dir / "catalog.src.yaml"
    source.write_text(CATALOG)
    catalog.write_text(render_catalog(source, f"http://127.0.0.1:{ports.fake_provider}"))
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            ports=ports,
            database_url=database_url,
            catalog_path=catalog,
            api_key="sk-sy-drill-" + secrets.token_urlsafe(16),
            admin_token="sy-admin-drill-" + secrets.token_urlsafe(16),
            extra_env={"billing": {"BILLING_ACK_WAIT_S": "5"}},
        )
    )
    try:
        with stack:
            yield DrillStack(stack)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def ledger_rows(stack: Stack, request_ids: Sequence[str]) -> list[Any]:
    """Billing's ledger entries (request_id, prompt/completion tokens) of ``request_ids``."""
    if not request_ids:
        return []
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT event_id, request_id, prompt_tokens, completion_tokens "
                        "FROM ledger_entries WHERE request_id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": sorted(set(request_ids))},
                ).all()
            )
    finally:
        engine.dispose()
