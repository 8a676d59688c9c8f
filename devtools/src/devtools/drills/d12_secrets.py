"""d12: secrets canary: an admin token, API key and provider credentials never leak.

A stack of its own whose secrets are canaries (random, greppable strings):

- the admin token (``GATEWAY_ADMIN_TOKEN``) and the dev API key (``GATEWAY_DEV_API_KEY``);
- a provider credential from the environment (``api_key_env`` of ``canary-env``, read by
  the router), a managed credential stored through the admin API for ``canary-fail``
  (whose provider answers 500: a provider failure), and a BYOK ``X-Provider-Key``;
- a refused API key and a refused admin token that contain the canaries (a service that
  logged what it refused would leak them).

Traffic: unary and streamed chats, a provider failure, BYOK calls, bad requests (bad
JSON, unknown model), refused keys and admin tokens, admin calls. Then every canary is
searched for in every service's captured stdout/stderr (``logs/*.log``; the fake
provider's own log excepted: it is the provider, it is sent the provider keys), every
response body and header, one ``/metrics`` scrape of each service, and every message
(data and headers) of every JetStream stream, read with nats-py. Figure: 0 hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats

from devtools.drills.base import DrillResult
from devtools.drills.kit import drill_database_url
from devtools.stack import Stack, throwaway_config

__all__ = ["Canaries", "Findings", "canary_stack", "drive_and_search", "run"]

NAME = "d12 secrets canary"
_PROVIDER_ENV = "SY_CANARY_PROVIDER_KEY"
_CATALOG = f"""\
version: 1
resilience:
  breaker: {{consecutive_failures: 100000, min_calls: 100000, cooldown_s: 1}}
providers:
  canary-env:
    kind: openai
    base_url: http://127.0.0.1:8090/v1
    api_key_env: {_PROVIDER_ENV}
    connect_timeout_s: 2
    read_timeout_s: 10
  canary-fail:
    kind: openai
    base_url: http://127.0.0.1:8090/fault/status=500/v1
    connect_timeout_s: 2
    read_timeout_s: 10
models:
  canary-chat:
    deployments:
      - provider: canary-env
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
  canary-broken:
    deployments:
      - provider: canary-fail
        model: mock-chat
    prices: {{input: "0.00000015", output: "0.0000006"}}
    context_window: 128000
    max_output_tokens: 16384
    capabilities: [chat, streaming]
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Canaries:
    """The secret values planted in the stack (each contains a random ``canary`` tag)."""

    admin_token: str
    api_key: str
    provider_env: str
    provider_managed: str
    provider_byok: str

    @classmethod
    def fresh(cls) -> Canaries:
        def tag() -> str:
            return "cnry" + secrets.token_hex(10)

        return cls(
            admin_token=f"sy-admin-{tag()}",
            api_key=f"sk-sy-canary-{tag()}",
            provider_env=f"sk-prov-{tag()}",
            provider_managed=f"sk-managed-{tag()}",
            provider_byok=f"sk-byok-{tag()}",
        )

    def needles(self) -> dict[str, bytes]:
        """What to search for: each secret, and its random tag alone (a truncated echo)."""
        found: dict[str, bytes] = {}
        for field in dataclasses.fields(self):
            value: str = getattr(self, field.name)
            found[field.name] = value.encode()
            found[field.name + " (tag)"] = value[value.index("cnry") :].encode()
        return found


@dataclasses.dataclass
class Findings:
    """Where each canary was found; what was searched."""

    hits: list[str] = dataclasses.field(default_factory=list)
    searched: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)

    def search(self, where: str, kind: str, blob: bytes, needles: dict[str, bytes]) -> None:
        self.searched[kind] = self.searched.get(kind, 0) + 1
        for name, needle in needles.items():
            if needle in blob:
                self.hits.append(f"{name} in {where}")


@contextlib.contextmanager
def canary_stack(
    canaries: Canaries, database_url: str | None = None
) -> Iterator[tuple[Stack, Path]]:
    """A stack whose secrets are ``canaries``; yields it and its data dir, then cleans up."""
    data_dir = Path(tempfile.mkdtemp(prefix="sy-canary-"))
    source = data_dir / "catalog.src.yaml"
    source.write_text(_CATALOG)
    config = throwaway_config(
        data_dir,
        database_url=database_url,
        catalog=source,
        label="canary",
        extra_env={"router": {_PROVIDER_ENV: canaries.provider_env}},
    )
    config = dataclasses.replace(config, api_key=canaries.api_key, admin_token=canaries.admin_token)
    try:
        with Stack(config) as stack:
            yield stack, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _chat(model: str, *, stream: bool = False) -> dict[str, object]:
    return {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "say something about canaries"}],
    }


async def _traffic(stack: Stack, canaries: Canaries, findings: Findings) -> list[httpx.Response]:
    """Every kind of call the drill makes; the responses, for the search."""
    user = {"Authorization": f"Bearer {canaries.api_key}"}
    admin = {"Authorization": f"Bearer {canaries.admin_token}"}
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:

        async def call(label: str, method: str, url: str, **kw: object) -> httpx.Response:
            resp = await http.request(method, url, **kw)  # type: ignore[arg-type]
            await resp.aread()
            findings.statuses[label] = resp.status_code
            responses.append(resp)
            return resp

        projects = await call("admin list projects", "GET", "/admin/projects", headers=admin)
        data = projects.json().get("data", []) if projects.status_code == 200 else []
        for project in data:
            await call(
                "admin add managed credential",
                "POST",
                f"/admin/projects/{project['id']}/credentials",
                headers=admin,
                json={"provider": "canary-fail", "api_key": canaries.provider_managed},
            )
            await call(
                "admin list credentials",
                "GET",
                f"/admin/projects/{project['id']}/credentials",
                headers=admin,
            )
        await asyncio.sleep(1.0)  # the router's credential cache follows the change event
        for i in range(3):
            await call(
                f"chat {i}", "POST", "/v1/chat/completions", headers=user, json=_chat("canary-chat")
            )
            await call(
                f"stream {i}",
                "POST",
                "/v1/chat/completions",
                headers=user,
                json=_chat("canary-chat", stream=True),
            )
            await call(
                f"provider failure {i}",
                "POST",
                "/v1/chat/completions",
                headers=user,
                json=_chat("canary-broken"),
            )
            await call(
                f"provider failure stream {i}",
                "POST",
                "/v1/chat/completions",
                headers=user,
                json=_chat("canary-broken", stream=True),
            )
        byok = {**user, "X-Provider-Key": canaries.provider_byok}
        await call(
            "byok chat", "POST", "/v1/chat/completions", headers=byok, json=_chat("canary-chat")
        )
        await call(
            "byok failure",
            "POST",
            "/v1/chat/completions",
            headers=byok,
            json=_chat("canary-broken"),
        )
        await call(
            "byok anthropic",
            "POST",
            "/v1/messages",
            headers=byok,
            json={
                "model": "canary-chat",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        await call("bad json", "POST", "/v1/chat/completions", headers=user, content=b"{not json")
        await call(
            "unknown model", "POST", "/v1/chat/completions", headers=user, json=_chat("nope")
        )
        refused = {"Authorization": f"Bearer {canaries.api_key}x"}
        await call(
            "refused key",
            "POST",
            "/v1/chat/completions",
            headers=refused,
            json=_chat("canary-chat"),
        )
        await call(
            "refused key anthropic",
            "POST",
            "/v1/messages",
            headers={"x-api-key": canaries.api_key + "x"},
            json={"model": "canary-chat", "max_tokens": 16, "messages": []},
        )
        await call(
            "refused admin token",
            "GET",
            "/admin/projects",
            headers={"Authorization": f"Bearer {canaries.admin_token}x"},
        )
        await call(
            "admin token as api key",
            "POST",
            "/v1/chat/completions",
            headers=admin,
            json=_chat("canary-chat"),
        )
        await call("api key as admin token", "GET", "/admin/projects", headers=user)
        await call("models", "GET", "/v1/models", headers=user)
    return responses


async def _stream_messages(nats_url: str) -> list[tuple[str, bytes]]:
    """(where, data + headers) of every message of every JetStream stream."""
    found: list[tuple[str, bytes]] = []
    nc = await nats.connect(nats_url)
    try:
        jsm = nc.jsm()
        for info in await jsm.streams_info():
            name, state = info.config.name, info.state
            if name is None:
                continue
            for seq in range(state.first_seq, state.last_seq + 1):
                try:
                    msg = await jsm.get_msg(name, seq)
                except Exception:  # a deleted sequence (KV history, limits)
                    continue
                headers = b"".join(f"{k}: {v}\n".encode() for k, v in (msg.headers or {}).items())
                found.append((f"stream {name} seq {seq}", (msg.data or b"") + b"\n" + headers))
    finally:
        await nc.close()
    return found


async def drive_and_search(stack: Stack, data_dir: Path, canaries: Canaries) -> Findings:
    """Drive the traffic, then search every place a secret could land."""
    findings = Findings()
    needles = canaries.needles()
    responses = await _traffic(stack, canaries, findings)
    for resp in responses:
        blob = resp.content + b"".join(f"{k}: {v}\n".encode() for k, v in resp.headers.items())
        findings.search(
            f"response to {resp.request.method} {resp.request.url.path}", "responses", blob, needles
        )
    await asyncio.sleep(2.0)  # let billing and sessions consume and log what they received
    ports = stack.config.ports
    async with httpx.AsyncClient(timeout=10) as http:
        for name, port in (
            ("edge", ports.edge),
            ("router", ports.router_metrics),
            ("billing", ports.billing_metrics),
            ("sessions", ports.sessions_metrics),
            ("rag", ports.rag_metrics),
        ):
            resp = await http.get(f"http://127.0.0.1:{port}/metrics")
            findings.statuses[f"metrics {name}"] = resp.status_code
            findings.search(f"{name} /metrics", "metrics scrapes", resp.content, needles)
    for where, blob in await _stream_messages(stack.nats_url):
        findings.search(where, "stream messages", blob, needles)
    for log in sorted((data_dir / "logs").glob("*.log")):
        if log.name.startswith("fake"):
            continue  # the provider itself: it is sent the provider keys by design
        findings.search(f"log {log.name}", "log files", log.read_bytes(), needles)
    return findings


def run(full: bool, kit: object = None) -> DrillResult:
    """The drill on a canary stack of its own (``kit`` is ignored: its secrets are not canaries)."""
    start = time.monotonic()
    canaries = Canaries.fresh()
    with canary_stack(canaries, drill_database_url()) as (stack, data_dir):
        findings = asyncio.run(drive_and_search(stack, data_dir, canaries))
    fives = sorted(k for k, v in findings.statuses.items() if v >= 500 and "failure" not in k)
    searched = ", ".join(f"{n} {k}" for k, n in sorted(findings.searched.items()))
    return DrillResult(
        name=NAME,
        load=f"{len(findings.statuses)} calls (ok, bad requests, refused keys, provider failures)",
        faults="5 canary secrets planted; a provider answering 500",
        figure=f"canary hits: {len(findings.hits)}; searched {searched}; {time.monotonic() - start:.0f} s",
        passed=not findings.hits and not fives,
        detail="; ".join(findings.hits[:10] + [f"unexpected 5xx: {k}" for k in fives]),
    )
