"""Secrets and content stay out of logs, the ledger and NATS headers.

A dedicated SQLite stack runs every service at DEBUG (so that as much as
possible is logged) with prompt logging left at its default (off). Canaries go
through every route family: API keys as bearers on refused and on served calls,
the operator token, a provider key brought by the caller (``X-Provider-Key``), a
project credential stored through the admin API, and prompts on /v1 chat
(unary, streamed, refused by the provider, unknown model), embeddings, the
Responses API (stored and not stored) and the Gateway API. A tap on the stack's
NATS records every message's headers meanwhile. Then none of the canaries may
appear in any line of any service's log, in any NATS header, in billing's tables,
in sessions' tables (except the stored response's own text, which is what that
table is for: its presence proves the scan reads content), or, for keys and
credentials, in the edge's tables (kept hashed or encrypted).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest
import sqlalchemy as sa
from nats.aio.msg import Msg

from devtools.ports import PortPlan
from devtools.stack import Stack, StackConfig, render_catalog

from .helpers import poll

_CATALOG = Path(__file__).with_name("catalog.yaml")
_SERVICES = ("router", "billing", "sessions", "edge")
#: Messages the tap keeps at most (a bound on the test's memory, far above what it sends).
_TAP_LIMIT = 20_000
_JSON_FIELDS = {"time", "level", "service", "logger", "message", "request_id"}


def _canary(kind: str) -> str:
    return f"{kind}{secrets.token_hex(10)}"


class NatsTap:
    """Every message's subject and headers on the stack's NATS, recorded from a thread."""

    def __init__(self, url: str) -> None:
        self.headers: list[tuple[str, dict[str, str]]] = []
        self.count = 0
        self._url = url
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        nc = await nats.connect(self._url, name="test-tap")

        async def record(msg: Msg) -> None:
            self.count += 1
            if len(self.headers) < _TAP_LIMIT:
                self.headers.append((msg.subject, dict(msg.headers or {})))

        await nc.subscribe(">", cb=record)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.drain()

    def __enter__(self) -> NatsTap:
        self._thread.start()
        assert self._ready.wait(20), "the NATS tap did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own SQLite stack, every service logging at DEBUG, prompt logging at its default."""
    data_dir = tmp_path_factory.mktemp("stack-redaction")
    ports = PortPlan.free()
    catalog = data_dir / "catalog.yaml"
    catalog.write_text(render_catalog(_CATALOG, f"http://127.0.0.1:{ports.fake_provider}"))
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            ports=ports,
            catalog_path=catalog,
            services=_SERVICES,
            api_key="sk-sy-canarydev" + secrets.token_hex(12),
            admin_token="sy-admin-canary" + secrets.token_hex(12),
            extra_env={name: {"GATEWAY_LOG_LEVEL": "DEBUG"} for name in _SERVICES},
        )
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _rows(url: str) -> str:
    """Every row of every table of the database at ``url``, as one text."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            parts = []
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    parts.append(f"{table}: {tuple(row)!r}")
            return "\n".join(parts)
    finally:
        engine.dispose()


def _service_logs(stack: Stack) -> dict[str, str]:
    """Our processes' logs (the fake provider is the provider: it may see what it is sent)."""
    return {
        path.name: path.read_text(errors="replace")
        for path in sorted(stack.log_dir.glob("*.log"))
        if not path.name.startswith("fakeprovider")
    }


def test_no_key_credential_or_prompt_in_logs_tables_or_nats_headers(quiet_stack: Stack) -> None:
    stack = quiet_stack
    assert stack.config.api_key and stack.config.admin_token
    operator = {"authorization": f"Bearer {stack.config.admin_token}"}
    refused_key = _canary("sk-sy-canaryrefused")
    refused_plain = _canary("canaryrefusedplain")
    byok = _canary("sk-canarybyok")
    byok_plain = _canary("canarybyokplain")
    credential = _canary("sk-canarycredential")
    prompt = _canary("canaryprompt")
    stored = _canary("canarystored")
    secrets_sent = [stack.config.api_key, stack.config.admin_token, refused_key, refused_plain]
    secrets_sent += [byok, byok_plain, credential]

    with NatsTap(stack.nats_url) as tap, httpx.Client(base_url=stack.base_url, timeout=30) as http:
        dev = {"authorization": f"Bearer {stack.config.api_key}"}
        chat = {"model": "mock-chat", "messages": [{"role": "user", "content": prompt}]}

        # Refused keys, on /v1 and on the admin API.
        for bad in (refused_key, refused_plain):
            assert (
                http.post(
                    "/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {bad}"}
                ).status_code
                == 401
            )
            assert http.get(
                "/admin/projects", headers={"authorization": f"Bearer {bad}"}
            ).status_code in (401, 403)
            assert (
                http.post(
                    "/v1/embeddings",
                    json={"model": "mock-embed", "input": prompt},
                    headers={"x-api-key": bad},
                ).status_code
                == 401
            )

        # Admin: a project, its key (a canary too), a credential for the fake provider.
        resp = http.post("/admin/projects", json={"name": "redaction"}, headers=operator)
        assert resp.status_code == 201, resp.text
        pid = resp.json()["id"]
        resp = http.post(
            f"/admin/projects/{pid}/keys",
            json={"name": "k", "scopes": ["chat", "admin"]},
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
        project_key = resp.json()["key"]
        secrets_sent.append(project_key)
        project = {"authorization": f"Bearer {project_key}"}
        resp = http.post(
            f"/admin/projects/{pid}/credentials",
            json={
                "provider": "fake",
                "api_key": credential,
                "base_url": stack.fake_provider_url + "/v1",
            },
            headers=operator,
        )
        assert resp.status_code == 201, resp.text
        assert credential not in resp.text

        # /v1 chat: unary and streamed on the dev key, on the project's credential,
        # with the caller's own provider key; refused by the provider; unknown model.
        assert http.post("/v1/chat/completions", json=chat, headers=dev).status_code == 200
        with http.stream(
            "POST", "/v1/chat/completions", json={**chat, "stream": True}, headers=dev
        ) as streamed:
            assert streamed.status_code == 200
            assert "[DONE]" in streamed.read().decode()
        assert http.post("/v1/chat/completions", json=chat, headers=project).status_code == 200
        for own in (byok, byok_plain):
            resp = http.post(
                "/v1/chat/completions", json=chat, headers={**dev, "x-provider-key": own}
            )
            assert resp.status_code == 200, resp.text
        refused = http.post(
            "/v1/chat/completions", json={**chat, "model": "mock-rate-limited"}, headers=dev
        )
        assert refused.status_code == 429, refused.text
        unknown = http.post(
            "/v1/chat/completions",
            json={**chat, "model": f"no-such-model-{secrets.token_hex(4)}"},
            headers=dev,
        )
        assert unknown.status_code in (400, 404), unknown.text

        # Embeddings, with the caller's own key too.
        embed = {"model": "mock-embed", "input": prompt}
        assert http.post("/v1/embeddings", json=embed, headers=dev).status_code == 200
        resp = http.post("/v1/embeddings", json=embed, headers={**dev, "x-provider-key": byok})
        assert resp.status_code == 200, resp.text

        # Responses: not stored (the prompt canary), stored (its own canary), and read back.
        resp = http.post(
            "/v1/responses",
            json={"model": "mock-reasoning", "input": prompt, "store": False},
            headers=dev,
        )
        assert resp.status_code == 200, resp.text
        resp = http.post(
            "/v1/responses", json={"model": "mock-reasoning", "input": stored}, headers=dev
        )
        assert resp.status_code == 200, resp.text
        assert http.get(f"/v1/responses/{resp.json()['id']}", headers=dev).status_code == 200

        # The Gateway API: an endpoint of the project, called with a message.
        resp = http.post(
            f"/admin/projects/{pid}/endpoints",
            json={"slug": "redact", "model": "mock-chat"},
            headers=project,
        )
        assert resp.status_code == 201, resp.text
        answer = http.post(f"/api/{pid}/redact", json={"message": prompt}, headers=project)
        assert answer.status_code == 200, answer.text
        assert prompt in answer.text  # the fake echoes it: completion text carries it too
        refused = http.post(
            f"/api/{pid}/redact",
            json={"message": prompt},
            headers={"authorization": f"Bearer {refused_key}"},
        )
        assert refused.status_code == 401, refused.text

        # Everything billed: the ledger holds the served calls before the scan.
        ledger = stack.database_url("billing")

        def billed() -> bool | None:
            engine = sa.create_engine(ledger)
            try:
                with engine.connect() as conn:
                    n = conn.execute(sa.text("SELECT count(*) FROM ledger_entries")).scalar_one()
            finally:
                engine.dispose()
            return True if n >= 8 else None

        poll(billed, timeout=30)

    logs = _service_logs(stack)
    assert {"edge.log", "router.log", "billing.log", "sessions.log"} <= set(logs)
    canaries = [*secrets_sent, prompt, stored]
    for name, text in logs.items():
        for canary in canaries:
            assert canary not in text, f"{canary[:14]}... in {name}"
    # Every service writes one JSON object a line.
    for name in ("edge.log", "router.log", "billing.log", "sessions.log"):
        lines = [line for line in logs[name].splitlines() if line.strip()]
        assert lines, name
        for line in lines:
            event = orjson.loads(line)
            assert set(event) >= _JSON_FIELDS, (name, line)
            assert event["service"] == name.removesuffix(".log")

    assert tap.count > 0 and tap.headers
    header_text = repr(tap.headers)
    for canary in canaries:
        assert canary not in header_text, f"{canary[:14]}... in a NATS header"

    billing_rows = _rows(stack.database_url("billing"))
    sessions_rows = _rows(stack.database_url("sessions"))
    edge_rows = _rows(stack.database_url("edge"))
    assert billing_rows and edge_rows
    for canary in canaries:
        assert canary not in billing_rows, f"{canary[:14]}... in billing's tables"
    for canary in [*secrets_sent, prompt]:
        assert canary not in sessions_rows, f"{canary[:14]}... in sessions' tables"
    for canary in secrets_sent:
        assert canary not in edge_rows, f"{canary[:14]}... in the edge's tables"
    # The control: the stored response's text is where it is meant to be, so the scan reads
    # content (a scan that saw nothing would pass everything above).
    assert stored in sessions_rows
