"""The web console at ``/console`` in Debian's chromium (Playwright) against a real stack.

Signs in with the admin token, creates a key in the UI, reads it off the page, calls the
gateway with it through the OpenAI SDK, then finds that request in the usage page with
its cost. Also over plain httpx: the cookie flags, CSRF refusal, logout. Screenshots of
the main pages go to docs/console/*.png (docs/console.md shows them). The browser tests run
on SQLite only: the console adds no storage of its own, the admin API it calls is tested on
both backends (the console's admin collection routes here too).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from devtools.stack import Stack
from tests.integration.helpers import poll

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


def _login(http: httpx.Client, stack: Stack) -> httpx.Response:
    resp = http.post("/console/api/login", json={"token": stack.config.admin_token})
    assert resp.status_code == 200, resp.text
    return resp


def test_session_cookie_csrf_and_logout(sqlite_stack: Stack) -> None:
    with httpx.Client(base_url=sqlite_stack.base_url, timeout=30) as http:
        page = http.get("/console/")
        assert page.status_code == 200 and "<main" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert http.get("/console/api/session").status_code == 401
        bad = http.post("/console/api/login", json={"token": "sk-sy-nope-" + "x" * 20})
        assert bad.status_code == 401 and bad.json()["ok"] is False

        resp = _login(http, sqlite_stack)
        cookies = resp.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("sy_console="))
        csrf_cookie = next(c for c in cookies if c.startswith("sy_csrf="))
        assert "HttpOnly" in session and "SameSite=strict" in session
        assert "Secure" not in session  # plain http here; https sets it
        assert "HttpOnly" not in csrf_cookie and "SameSite=strict" in csrf_cookie
        assert sqlite_stack.config.admin_token not in session
        csrf = resp.json()["csrf"]

        # Reads need only the cookie; writes also the CSRF header.
        assert http.get("/admin/projects").status_code == 200
        refused = http.post("/admin/projects", json={"name": "console-csrf"})
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
        wrong = http.post(
            "/admin/projects", json={"name": "console-csrf"}, headers={"x-csrf-token": "x" * 32}
        )
        assert wrong.status_code == 403
        made = http.post(
            "/admin/projects", json={"name": "console-csrf"}, headers={"x-csrf-token": csrf}
        )
        assert made.status_code == 201, made.text
        # A forged cookie is refused.
        forged = httpx.get(
            f"{sqlite_stack.base_url}/admin/projects",
            cookies={"sy_console": session.split(";")[0].split("=", 1)[1][:-4] + "0000"},
        )
        assert forged.status_code == 401

        assert http.post("/console/api/logout").status_code == 403  # no CSRF token
        old = dict(http.cookies)
        assert http.post("/console/api/logout", headers={"x-csrf-token": csrf}).status_code == 204
        replay = httpx.get(f"{sqlite_stack.base_url}/admin/projects", cookies=old)
        assert replay.status_code == 401


def _settled(page: Any) -> None:
    """Wait until the console has finished rendering (it marks ``main`` busy meanwhile)."""
    page.locator("main[aria-busy=false]").wait_for(state="attached")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed and `make browser-deps` could not install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def test_console_key_to_usage_in_browser(sqlite_stack: Stack, browser: Any) -> None:
    stack = sqlite_stack
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        op = {"authorization": f"Bearer {stack.config.admin_token}"}
        projects = http.get("/admin/projects", headers=op).json()["data"]
        pid = next(p["id"] for p in projects if p["name"] == "default")

    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    script_errors: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    page.on("console", lambda m: script_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{stack.base_url}/console/")
    page.get_by_label("Admin token or admin key").fill("wrong-token-123456789")
    page.get_by_role("button", name="Sign in").click()
    # The element exists before the answer arrives: wait for its text, then read it.
    page.locator("#error").filter(has_text="401").wait_for(timeout=10_000)
    assert "401" in page.locator("#error").inner_text()  # errors in words
    page.get_by_label("Admin token or admin key").fill(stack.config.admin_token or "")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API keys").wait_for()
    assert page.evaluate("localStorage.length") == 0
    assert "sy_console" not in page.evaluate("document.cookie")  # HttpOnly

    page.get_by_label("Project").select_option(pid)
    _settled(page)
    page.get_by_label("Name", exact=True).fill("console-made")
    page.get_by_label("Description").fill("made in the browser test")
    page.get_by_label("Valid for").select_option("604800")
    page.get_by_role("button", name="Create key").click()
    try:
        page.locator("#new-key-value").wait_for()
    except Exception:
        shown = page.locator("#error").inner_text()
        raise AssertionError(f"no key shown: {shown!r}; script errors: {script_errors}") from None
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    key = page.locator("#new-key-value").inner_text().strip()
    assert key.startswith("sk-")
    assert page.get_by_role("cell", name="console-made", exact=True).count() == 1
    page.screenshot(path=str(SHOTS / "keys.png"), full_page=True)

    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat", messages=[{"role": "user", "content": "hello from the console test"}]
    )
    request_id = raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content

    def billed() -> str | None:
        page.goto(f"{stack.base_url}/console/#/usage")
        page.reload()
        page.get_by_role("heading", name="Usage").wait_for()
        page.get_by_label("Project").select_option(pid)
        _settled(page)
        page.get_by_label("Request id").fill(request_id)
        page.get_by_role("button", name="Show line items").click()
        try:
            return page.locator("#request-total").inner_text(timeout=1_000)
        except Exception:
            return None

    total = poll(billed, timeout=30)
    assert Decimal(total.lstrip("$")) > 0
    assert page.get_by_role("cell", name="mock-chat").count() >= 1
    page.screenshot(path=str(SHOTS / "usage.png"), full_page=True)

    for name, heading in (
        ("models", "Models"),
        ("connect", "Connect"),
        ("credentials", "Provider credentials"),
        ("projects", "Projects"),
    ):
        page.goto(f"{stack.base_url}/console/#/{name}")
        page.get_by_role("heading", name=heading).wait_for()
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.goto(f"{stack.base_url}/console/#/connect")
    page.get_by_label("Language").select_option("python")
    code = page.locator("#code").inner_text()
    assert f'base_url="{stack.base_url}/v1"' in code and "pip install openai" in page.content()

    # Model output is rendered as text plus a safe Markdown subset: no HTML injection.
    html = page.evaluate(
        "import('/console/md.js').then(m => m.renderMarkdown("
        "'**hi** <img src=x onerror=alert(1)> [x](javascript:alert(1))'))"
    )
    assert "<strong>hi</strong>" in html and "<img" not in html and 'href="javascript' not in html

    page.goto(f"{stack.base_url}/console/#/playground")
    page.get_by_label("API key (kept in this tab's memory only)").fill(key)
    page.get_by_label("Message").fill("stream me something")
    page.get_by_role("button", name="Send").click()
    poll(lambda: page.locator("#reply").inner_text().strip() or None, timeout=15)
    page.screenshot(path=str(SHOTS / "playground.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 800})  # a phone's width
    page.goto(f"{stack.base_url}/console/#/keys")
    page.get_by_role("heading", name="API keys").wait_for()
    page.screenshot(path=str(SHOTS / "keys-phone.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    ctx.close()


def _project_with_keys(http: httpx.Client, stack: Stack, *scope_sets: list[str]) -> list[str]:
    """A fresh project's id, then one key per scope set."""
    op = {"authorization": f"Bearer {stack.config.admin_token}"}
    made = http.post(
        "/admin/projects", json={"name": f"console-{secrets.token_hex(4)}"}, headers=op
    )
    assert made.status_code == 201, made.text
    pid: str = made.json()["id"]
    keys = []
    for scopes in scope_sets:
        resp = http.post(
            f"/admin/projects/{pid}/keys", json={"name": "k", "scopes": scopes}, headers=op
        )
        assert resp.status_code == 201, resp.text
        keys.append(resp.json()["key"])
    return [pid, *keys]


def test_admin_collection_routes_for_the_console(stack: Stack) -> None:
    """``/admin/projects/{id}/collections``: session + CSRF, project rule, rag's answers
    (both backends: these routes read the project from the edge's database)."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        pid, admin_key = _project_with_keys(http, stack, ["admin"])
        other, other_admin = _project_with_keys(http, stack, ["admin"])
        base = f"/admin/projects/{pid}/collections"
        csrf = _login(http, stack).json()["csrf"]
        w = {"x-csrf-token": csrf}

        refused = http.post(base, json={"name": "kb"})
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
        col = http.post(base, json={"name": "kb", "description": "d"}, headers=w)
        assert col.status_code == 201, col.text
        cid = col.json()["id"]
        again = http.post(base, json={"name": "kb"}, headers=w)
        assert again.status_code == 409 and again.json()["ok"] is False, again.text
        doc = http.post(
            f"{base}/{cid}/documents",
            files={
                "file": ("faq.md", b"# FAQ\n\nLaptops are ordered through IT.", "text/markdown")
            },
            headers=w,
        )
        assert doc.status_code == 201 and doc.json()["status"] == "queued", doc.text
        bad = http.post(f"{base}/{cid}/documents", json={"name": "e", "text": "  "}, headers=w)
        assert bad.status_code == 400 and bad.json()["code"] == "empty_document", bad.text

        def ready() -> dict[str, Any] | None:
            docs = http.get(f"{base}/{cid}/documents").json()["data"]
            assert docs[0]["status"] != "failed", docs
            return docs[0] if docs[0]["status"] == "ready" else None

        assert poll(ready, timeout=60, interval=0.1)["chunk_count"] >= 1
        hits = http.post(f"{base}/{cid}/query", json={"query": "laptop ordered"}, headers=w)
        assert hits.status_code == 200 and "Laptops" in hits.json()["data"][0]["text"], hits.text

        # A project admin key reaches its own project only; another project's collection
        # is 404 like one that never existed; an unknown project is 404 for the operator.
        assert http.get(base, headers={"authorization": f"Bearer {admin_key}"}).status_code == 200
        theirs = http.get(base, headers={"authorization": f"Bearer {other_admin}"})
        assert theirs.status_code == 403, theirs.text
        cross = http.get(f"/admin/projects/{other}/collections/{cid}/documents")
        assert cross.status_code == 404, cross.text
        assert http.get("/admin/projects/nope/collections").status_code == 404

        gone = http.delete(f"{base}/{cid}/documents/{doc.json()['id']}", headers=w)
        assert gone.status_code == 200 and gone.json()["deleted"] is True
        assert http.delete(f"{base}/{cid}", headers=w).json()["deleted"] is True
        assert http.get(base).json()["data"] == []


@pytest.mark.timeout(240)
def test_console_collection_to_gateway_in_browser(sqlite_stack: Stack, browser: Any) -> None:
    """Create a collection, upload text and a file, watch both reach ``ready``, query it,
    then create a gateway on it, call it with the OpenAI SDK, edit and delete it."""
    stack = sqlite_stack
    own_url = f"{stack.fake_provider_url}/v1"
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        pid, chat_key = _project_with_keys(http, stack, ["chat"])
        cred = http.post(
            f"/admin/projects/{pid}/credentials",
            json={
                "provider": "openai",
                "api_key": "sk-byok-" + secrets.token_hex(8) + "4321",
                # a BYOK gateway needs the credential's own OpenAI-compatible endpoint
                "base_url": own_url,
            },
            headers={"authorization": f"Bearer {stack.config.admin_token}"},
        )
        assert cred.status_code in (200, 201), cred.text

    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{stack.base_url}/console/#/collections")
    page.get_by_label("Admin token or admin key").fill(stack.config.admin_token or "")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Knowledge collections").wait_for()
    page.get_by_label("Project").select_option(pid)
    _settled(page)
    page.get_by_label("Collection name").fill("handbook")
    page.get_by_label("Collection description").fill("made in the browser test")
    page.get_by_role("button", name="Create collection").click()
    page.get_by_role("heading", name="Documents of handbook").wait_for()

    fact = "The Switchyard lighthouse keeper is named Orla Brightwater."
    page.get_by_label("Document name").fill("lighthouse.txt")
    page.get_by_label("Text", exact=True).fill(fact)
    page.get_by_role("button", name="Upload document").click()
    try:
        page.locator("#docs [data-status=ready]").wait_for(timeout=60_000)  # polled to ready
    except Exception:
        seen = page.locator("#error").inner_text(), page.locator("main").inner_text()
        raise AssertionError(f"no ready document; page shows {seen!r}") from None
    page.get_by_label("Or a file").set_input_files(
        files=[{"name": "faq.md", "mimeType": "text/markdown", "buffer": b"# FAQ\n\nAsk IT."}]
    )
    page.get_by_role("button", name="Upload document").click()
    page.locator("#docs").get_by_role("cell", name="faq.md", exact=True).wait_for()
    poll(lambda: page.locator("#docs [data-status=ready]").count() == 2 or None, timeout=60)
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    page.get_by_label("Query").fill("who keeps the lighthouse")
    page.get_by_role("button", name="Search").click()
    page.locator("#hits td", has_text="Orla Brightwater").wait_for()
    page.screenshot(path=str(SHOTS / "collections.png"), full_page=True)
    page.get_by_role("button", name="Delete document faq.md").click()
    page.locator("#docs").get_by_role("cell", name="faq.md", exact=True).wait_for(state="detached")

    page.goto(f"{stack.base_url}/console/#/gateways")
    page.get_by_role("heading", name="Gateways").wait_for()
    page.get_by_label("Project").select_option(pid)
    _settled(page)
    page.get_by_label("Name", exact=True).fill("helpdesk")
    page.get_by_label("Instructions").fill("Answer from the sources.")
    page.locator("#gw-form select[name=model]").select_option("mock-chat")
    page.get_by_role("spinbutton", name="Temperature").fill("0.2")
    page.get_by_label("Prefill (the answer starts with this)").fill("From the sources:")
    page.get_by_label("Collection").select_option(label="handbook")
    page.get_by_label("Top k").fill("2")
    page.get_by_role("checkbox", name="temperature").check()
    page.get_by_role("button", name="Create gateway").click()
    code = page.locator("#gw-code").inner_text()
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    short = page.locator("td code", has_text="helpdesk:").inner_text().strip()
    assert f'model="{short}"' in code and f'base_url="{stack.base_url}/v1"' in code
    page.screenshot(path=str(SHOTS / "gateways.png"), full_page=True)

    # The snippet's call works: grounded in the uploaded document, citing it.
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=chat_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=short, messages=[{"role": "user", "content": "Who keeps the lighthouse?"}]
    )
    body = raw.http_response.json()
    assert body["choices"][0]["message"]["annotations"], body

    page.get_by_role("button", name="Edit helpdesk").click()
    page.get_by_role("heading", name=f"Edit gateway {short}").wait_for()
    assert page.get_by_role("spinbutton", name="Temperature").input_value() == "0.2"
    page.get_by_label("Top k").fill("3")
    page.get_by_role("button", name="Save gateway").click()
    page.get_by_role("cell", name="handbook (top 3, ≥ 0)").wait_for()
    page.get_by_role("button", name="Delete helpdesk").click()
    page.get_by_role("cell", name="Nothing yet.").wait_for()
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()

    # BYOK: a gateway on one of the project's credentials; the admin API's refusal is shown.
    page.get_by_label("Name", exact=True).fill("own-key")
    page.get_by_label("Provider credential").select_option(label=f"openai …4321 at {own_url}")
    page.get_by_role("button", name="Create gateway").click()
    page.locator("#error", has_text="model").wait_for()
    page.get_by_label("Model at the credential's endpoint").fill("gpt-own")
    page.get_by_role("button", name="Create gateway").click()
    page.get_by_role("cell", name="gpt-own via openai …4321").wait_for()
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    page.get_by_role("button", name="Edit own-key").click()
    page.locator("h2", has_text="Edit gateway own-key").wait_for()
    assert page.get_by_label("Model at the credential's endpoint").input_value() == "gpt-own"
    ctx.close()
