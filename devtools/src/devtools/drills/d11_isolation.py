"""d11 tenant isolation: project B's keys, fuzzed against every operation that takes an id of A.

Project A is given one of everything through the API (an every-scope key, a managed
provider credential, an endpoint, a gateway, a knowledge collection with a document,
a project and a key budget, a stored response, usage from a chat call) and a channel
project of its own (channel key, widget). Project B has an every-scope key
(``b-admin``) and a chat-only key (``b-chat``).

Every operation with a path parameter is fuzzed by schemathesis (``d10_fuzz.fuzz``)
as each of B's keys (the short form: ``b-admin`` only, cut at ``SHORT_BUDGET_S``), with its path parameters pinned twice: to A's ids, and to B's
project id with A's ids below it (``/admin/projects/{B}/keys/{A's key}``). The bodies
and queries are generated. A handful of hand-made calls carry A's ids in the body
(``previous_response_id``, a gateway id as ``model``, ``collection_id``).

An answer *leaks* when its body holds one of A's markers (ids, names, the key, the
credential's fingerprint and provider key, the document's text, the prompt) that the
request itself did not carry: a 404 that repeats the id it was asked for is not a
leak. The figure: requests, leaks (0 to pass), 5xx.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis

from devtools.drills import d10_fuzz
from devtools.drills.base import DrillResult
from devtools.drills.kit import DrillStack, on_kit

__all__ = ["FULL_EXAMPLES", "SHORT_EXAMPLES", "TenantA", "leak_of", "run"]

NAME = "d11 tenant isolation"
#: Examples per operation, key, pinning and generation mode.
FULL_EXAMPLES, SHORT_EXAMPLES = 50, 1
SHORT_BUDGET_S = 15.0


@dataclass(slots=True)
class TenantA:
    """Project A's ids by path-parameter name, and every string that is A's data."""

    ids: dict[str, str] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)


def _ok(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise RuntimeError(f"d11 setup: {resp.request.method} {resp.request.url}: {resp.text}")
    body: dict[str, Any] = resp.json() if resp.content else {}
    return body


def tenant_a(http: httpx.Client, operator: dict[str, str]) -> TenantA:
    """Make project A and one of everything it can own (module docstring)."""
    tag = secrets.token_hex(6)
    a = TenantA()
    project = _ok(http.post("/admin/projects", json={"name": f"a-{tag}"}, headers=operator))
    pid = a.ids["project_id"] = project["id"]
    scopes = ["chat", "embeddings", "responses", "admin", "collections:write"]
    key = _ok(
        http.post(
            f"/admin/projects/{pid}/keys",
            json={"name": f"ak-{tag}", "scopes": scopes},
            headers=operator,
        )
    )
    a.ids["key_id"] = key["id"]
    own = {"authorization": f"Bearer {key['key']}"}
    provider_key = f"sk-a-secret-{tag}"
    cred = _ok(
        http.post(
            f"/admin/projects/{pid}/credentials",
            json={"provider": "fake", "api_key": provider_key},
            headers=operator,
        )
    )
    a.ids["credential_id"] = cred["id"]
    prompt = f"a-prompt-{tag}"
    endpoint = {"slug": f"a-ep-{tag}", "model": "mock-chat", "system_prompt": prompt}
    a.ids["slug"] = _ok(http.post(f"/admin/projects/{pid}/endpoints", json=endpoint, headers=own))[
        "slug"
    ]
    gateway = {"name": f"a-gw-{tag}", "model": "mock-chat", "instructions": prompt}
    a.ids["gateway_id"] = _ok(
        http.post(f"/admin/projects/{pid}/gateways", json=gateway, headers=operator)
    )["id"]
    coll = _ok(http.post("/v1/collections", json={"name": f"a-coll-{tag}"}, headers=own))
    a.ids["collection_id"] = coll["id"]
    text = f"a-document-{tag} " * 20
    doc = _ok(
        http.post(
            f"/v1/collections/{coll['id']}/documents",
            json={"name": f"a-doc-{tag}.txt", "text": text},
            headers=own,
        )
    )
    a.ids["document_id"] = doc["id"]
    _ok(http.put(f"/admin/projects/{pid}/budget", json={"limit": "77.00"}, headers=operator))
    _ok(
        http.put(
            f"/admin/projects/{pid}/keys/{key['id']}/budget",
            json={"limit": "7.00"},
            headers=operator,
        )
    )
    chat = {"model": "mock-chat", "messages": [{"role": "user", "content": prompt}]}
    reply = http.post("/v1/chat/completions", json=chat, headers=own)
    a.ids["request_id"] = reply.headers.get("x-request-id", "")
    stored = _ok(
        http.post(
            "/v1/responses",
            json={"model": "drill-chain", "input": prompt, "store": True},
            headers=own,
        )
    )
    a.ids["response_id"] = stored["id"]
    channel = _ok(
        http.post(
            "/admin/projects",
            json={"name": f"a-ch-{tag}", "type": "channel", "settings": {"model": "mock-chat"}},
            headers=operator,
        )
    )
    channel_key = _ok(http.post(f"/admin/projects/{channel['id']}/channel-key", headers=operator))
    a.markers |= {
        *a.ids.values(),
        project["name"],
        key["key"],
        key["name"],
        cred["fingerprint"],
        provider_key,
        prompt,
        f"a-document-{tag}",
        f"a-coll-{tag}",
        channel["id"],
        channel_key["key"],
    }
    a.markers.discard("")
    return a


def leak_of(markers: set[str]) -> d10_fuzz.Inspect:
    """``inspect`` for ``fuzz``: which of ``markers`` the answer holds that the request did not."""

    def inspect(case: schemathesis.Case, response: schemathesis.Response) -> str | None:
        sent = response.request.url or ""
        body = response.request.body or b""
        sent += body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        found = sorted(m for m in markers if m in response.text and m not in sent)
        return f"leak: A's {found} in the answer" if found else None

    return inspect


def _pins(a: TenantA, b_project: str) -> Callable[[str], list[dict[str, str]]]:
    def pins(path: str) -> list[dict[str, str]]:
        names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
        first = {name: a.ids[name] for name in names if name in a.ids}
        if not first:
            return []
        sets = [first]
        if "project_id" in first and len(first) > 1:
            sets.append({**first, "project_id": b_project})
        return sets

    return pins


def _hand_made(http: httpx.Client, a: TenantA, headers: dict[str, str]) -> list[httpx.Response]:
    """Calls that name A's ids in the body rather than the path."""
    return [
        http.post(
            "/v1/responses",
            json={
                "model": "drill-chain",
                "input": "hi",
                "previous_response_id": a.ids["response_id"],
            },
            headers=headers,
        ),
        http.post(
            "/v1/chat/completions",
            json={"model": a.ids["gateway_id"], "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        ),
        http.post(
            "/v1/collections/" + a.ids["collection_id"] + "/query",
            json={"query": "a-document"},
            headers=headers,
        ),
    ]


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    return on_kit(kit, lambda running: _drill(running, full))


def _drill(kit: DrillStack, full: bool) -> DrillResult:
    start = time.monotonic()
    assert kit.stack.config.admin_token is not None
    operator = {"authorization": f"Bearer {kit.stack.config.admin_token}"}
    with httpx.Client(base_url=kit.base_url, timeout=30) as http:
        a = tenant_a(http, operator)
        b_project, _, b_admin = d10_fuzz.foreign_key(
            kit.base_url, kit.stack.config.admin_token, f"b-{secrets.token_hex(4)}"
        )
        b_chat = _ok(
            http.post(
                f"/admin/projects/{b_project}/keys",
                json={"name": "b-chat", "scopes": ["chat"]},
                headers=operator,
            )
        )["key"]
        callers = {
            "b-admin": {"authorization": f"Bearer {b_admin}"},
            "b-chat": {"authorization": f"Bearer {b_chat}"},
        }
        inspect = leak_of(a.markers)
        hand = [resp for headers in callers.values() for resp in _hand_made(http, a, headers)]
    hand_leaks = [
        f"{r.request.method} {r.request.url.path}: {m}"
        for r in hand
        for m in sorted(a.markers)
        if m in r.text and m not in str(r.request.url) + r.request.content.decode(errors="replace")
    ]
    examples = FULL_EXAMPLES if full else SHORT_EXAMPLES
    keys = callers if full else {"b-admin": callers["b-admin"]}
    report = d10_fuzz.fuzz(
        kit.base_url,
        keys,
        examples=examples,
        budget_s=None if full else SHORT_BUDGET_S,
        select=lambda method, path: "{" in path,
        path_parameters=_pins(a, b_project),
        inspect=inspect,
        checks=False,
    )
    leaks = report.distinct() + hand_leaks
    fives = report.server_errors + sum(1 for r in hand if r.status_code >= 500)
    return DrillResult(
        name=NAME,
        load=(
            f"{report.operations} operations with ids x {len(keys)} key(s) of B x A's ids "
            "(and B's project) "
            f"x <= {examples} examples{' (cut at the time budget)' if report.cut_short else ''}: "
            f"{report.requests + len(hand)} requests"
        ),
        faults=f"B's keys against A's {len(a.ids)} kinds of id; {len(a.markers)} markers searched",
        figure=(
            f"answers carrying A's data: {len(leaks)}; 5xx: {fives}; "
            f"statuses: {dict(sorted(report.statuses.items()))}; {time.monotonic() - start:.1f} s"
        ),
        passed=not leaks and fives == 0 and report.requests > 0,
        detail="; ".join(leaks[:20]),
    )
