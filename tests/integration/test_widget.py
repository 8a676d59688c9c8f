"""The embeddable channel widget (docs/widget.md) in Debian's chromium against a real stack.

A test page served on loopback (a real socket, another origin than the edge) embeds the
one script tag, chats through the fake provider (which echoes the message, so the
reply carries whatever HTML the test sends), sees the reply stream in (text on the page
before the final frame) rendered as Markdown and its ``<script>`` / ``<img onerror>``
inert, sees a provider failure (500), exhausted credits (403) and the visitor limit (429)
in words, reloads and sees the history. Over httpx:
a disallowed origin, the widget id on other routes, visitor isolation, the
per-visitor limit, and that a settings write can neither drop nor forge a widget id.
The browser tests run on SQLite only, like test_console.py; the httpx one on both backends.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest

from devtools.stack import Stack
from tests.integration.helpers import fake_requests, poll
from tests.integration.test_console import SHOTS, _settled, browser  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(120)

_PAGE = """<!doctype html><html><head><title>Shop page</title></head><body>
<h1>Shop</h1>
<script src="{src}" data-widget-id="{widget_id}"></script>
</body></html>"""


def _operator(stack: Stack) -> dict[str, str]:
    assert stack.config.admin_token is not None
    return {"authorization": f"Bearer {stack.config.admin_token}"}


class _Site:
    """A site on loopback serving one page that embeds the widget."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http(sqlite_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sqlite_stack.base_url, timeout=30) as client:
        yield client


def _channel(http: httpx.Client, stack: Stack, origin: str, **settings: Any) -> tuple[str, str]:
    resp = http.post(
        "/admin/projects",
        json={
            "name": f"wg-{secrets.token_hex(4)}",
            "type": "channel",
            "settings": {"model": "mock-chat", "allowed_origins": [origin], **settings},
        },
        headers=_operator(stack),
    )
    assert resp.status_code == 201, resp.text
    project_id: str = resp.json()["id"]
    widget = http.post(f"/admin/projects/{project_id}/widget", headers=_operator(stack))
    assert widget.status_code == 200, widget.text
    body = widget.json()
    assert body["widget_id"].startswith("sywg_")
    assert f'data-widget-id="{body["widget_id"]}"' in body["snippet"]
    assert "/channel/v1/widget.js" in body["snippet"]
    return project_id, body["widget_id"]


def _wait_ready(http: httpx.Client, widget_id: str, origin: str) -> None:
    """The widget id reaches the edge's channel cache through projects.changed.v1."""

    def ready() -> bool | None:
        resp = http.get(
            "/channel/v1/history",
            params={"session_id": "probe"},
            headers={"x-widget-id": widget_id, "x-visitor-id": "p" * 20, "origin": origin},
        )
        return True if resp.status_code == 200 else None

    poll(ready, timeout=10)


def test_widget_chats_renders_safely_and_keeps_history(
    sqlite_stack: Stack,
    http: httpx.Client,
    browser: Any,  # noqa: F811
) -> None:
    site = _Site()
    origin = f"http://127.0.0.1:{site.port}"
    try:
        # mock-slow-stream: 200 ms between the fake's SSE events, so a reply visibly grows.
        # Three messages a minute: this one and two refused below; the fourth is over.
        settings = {"model": "mock-slow-stream", "widget_visitor_per_minute": 3}
        project_id, widget_id = _channel(http, sqlite_stack, origin, **settings)
        _wait_ready(http, widget_id, origin)
        src = f"{sqlite_stack.base_url}/channel/v1/widget.js"
        site.html = _PAGE.format(src=src, widget_id=widget_id)

        context = browser.new_context()
        page = context.new_page()
        page.on("dialog", lambda d: d.dismiss())
        page.goto(origin + "/")
        shadow = page.locator(".switchyard-widget")
        shadow.locator("textarea").wait_for()
        hostile = (
            "**bold** <script>window.__pwned = 1</script>"
            ' <img src="x" onerror="window.__pwned = 2">'
        )
        shadow.locator("textarea").fill(hostile)
        shadow.locator("button").click()
        # Streaming: text is on the page while the reply is still busy (before `done`).
        partial = page.wait_for_function(_GROWING).json_value()
        reply = shadow.locator(".msg.assistant:not([aria-busy])")
        reply.wait_for()
        assert 0 < len(partial) < len(reply.inner_text())
        assert reply.locator("strong").inner_text() == "bold"
        assert reply.locator("img").count() == 0 and reply.locator("script").count() == 0
        assert "<script>window.__pwned = 1</script>" in reply.inner_text()
        page.wait_for_timeout(300)  # an onerror would have fired by now
        assert page.evaluate("window.__pwned") is None

        # The page's URL and title reached the model as context.
        sent = fake_requests(sqlite_stack.fake_provider_url, "window.__pwned = 2")
        assert sent and "Shop page" in str(sent[-1]["body"])
        assert f'\\"page_url\\":\\"{origin}/\\"' in orjson.dumps(sent[-1]["body"]).decode()

        _refusals_are_shown(sqlite_stack, http, page, project_id, widget_id, origin)

        page.reload()
        shadow = page.locator(".switchyard-widget")
        shadow.locator(".msg.assistant").wait_for()
        assert shadow.locator(".msg.user").count() == 1
        assert shadow.locator(".msg.assistant strong").inner_text() == "bold"
        assert page.evaluate("window.__pwned") is None
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "widget.png"))
        context.close()

        # Another origin (localhost is not 127.0.0.1) embedding the same tag is refused.
        other = browser.new_context()
        page = other.new_page()
        page.goto(f"http://localhost:{site.port}/")
        refusal = page.locator(".switchyard-widget .msg.error")
        assert "not available on this page" in refusal.inner_text()
        other.close()
    finally:
        site.close()


#: The text of the assistant message still streaming (``aria-busy``), once it has some.
_GROWING = """() => {
  const root = document.querySelector(".switchyard-widget").shadowRoot;
  const busy = root.querySelector('.msg.assistant[aria-busy="true"]');
  return busy && busy.textContent.length > 0 ? busy.textContent : null;
}"""


def _refusals_are_shown(
    stack: Stack, http: httpx.Client, page: Any, project_id: str, widget_id: str, origin: str
) -> None:
    """A provider failure (500), exhausted credits (403) and the visitor limit (429), each
    shown in words in the panel, with no empty reply left behind."""

    def other_gets(status: int) -> bool | None:
        """Another visitor (a new one each time: each has its own limit) gets ``status``."""
        other = {"x-widget-id": widget_id, "x-visitor-id": secrets.token_hex(10), "origin": origin}
        resp = http.post(
            "/channel/v1/chat", json={"message": "probe", "session_id": "p"}, headers=other
        )
        return True if resp.status_code == status else None

    def said(message: str) -> str:
        shadow = page.locator(".switchyard-widget")
        before = shadow.locator(".msg.error").count()
        shadow.locator("textarea").fill(message)
        shadow.locator("button").click()
        error = shadow.locator(".msg.error").nth(before)
        error.wait_for()
        return str(error.inner_text())

    down = {"model": "widget-down", "allowed_origins": [origin], "widget_visitor_per_minute": 3}
    patched = http.patch(
        f"/admin/projects/{project_id}", json={"settings": down}, headers=_operator(stack)
    )
    assert patched.status_code == 200, patched.text
    poll(lambda: other_gets(500), timeout=10)
    assert said("second") == "The AI provider failed to answer. Please try again later."

    top_up = http.post(
        f"/admin/projects/{project_id}/credits/topups",
        json={"topup_id": "widget", "amount": "0.0000001"},  # below any call's worst case
        headers=_operator(stack),
    )
    assert top_up.status_code == 200, top_up.text
    poll(lambda: other_gets(403), timeout=10)
    assert "Credits exhausted" in said("third")

    # The visitor limit's windows are clock-aligned minutes: when one ends between the
    # first message and now, up to three more are admitted (and refused for credits)
    # before the limit binds in the new window. Never a fifth refusal for credits.
    too_fast = "You are sending messages too fast. Please wait a moment and try again."
    answers = [said("fourth")]
    while answers[-1] != too_fast and len(answers) < 4:
        answers.append(said("again"))
    assert answers[-1] == too_fast, answers
    assert all("Credits exhausted" in a for a in answers[:-1]), answers
    assert page.locator(".switchyard-widget .msg.assistant").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "widget-errors.png"))


def test_widget_id_is_confined(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        _confined(stack, http)


def _confined(stack: Stack, http: httpx.Client) -> None:
    origin = "https://shop.example.com"
    project_id, widget_id = _channel(
        http, stack, origin, widget_visitor_per_minute=2, system_prompt="Be brief."
    )
    _wait_ready(http, widget_id, origin)
    visitor = "v" + secrets.token_hex(10)
    headers = {"x-widget-id": widget_id, "x-visitor-id": visitor, "origin": origin}

    def chat(message: str, **extra: str) -> httpx.Response:
        return http.post(
            "/channel/v1/chat",
            json={"message": message, "session_id": "s1"},
            headers={**headers, **extra},
        )

    ok = chat("hello")
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == origin

    # Origin: missing or not allowed -> 403, no CORS headers, seed 003's {error} shape.
    for bad in ("https://evil.example.com", ""):
        resp = chat("hi", origin=bad)
        assert resp.status_code == 403, resp.text
        assert set(resp.json()) == {"error"}
        assert "access-control-allow-origin" not in resp.headers
    # An unknown id, a malformed visitor id.
    assert chat("hi", **{"x-widget-id": "sywg_" + "x" * 32}).status_code == 401
    bad_visitor = chat("hi", **{"x-visitor-id": "short"})
    assert bad_visitor.status_code == 400 and "visitor_id" in bad_visitor.json()["error"]

    # The widget id is no key anywhere else.
    bearer = {"authorization": f"Bearer {widget_id}", "origin": origin}
    completions = http.post(
        "/v1/chat/completions",
        json={"model": "mock-chat", "messages": [{"role": "user", "content": "x"}]},
        headers=bearer,
    )
    assert completions.status_code == 401
    assert http.get("/admin/projects", headers=bearer).status_code in (401, 403)
    assert http.get(f"/admin/projects/{project_id}/channel-key", headers=bearer).status_code in (
        401,
        403,
    )
    assert http.get("/channel/v1/models", headers=headers).status_code in (401, 403)
    assert (
        http.post(
            "/channel/v1/chat",
            json={"message": "x", "session_id": "s1"},
            headers={"x-channel-key": widget_id},
        ).status_code
        == 401
    )

    # A visitor's sessions are its own: another visitor and the site's backend (same
    # session id, the channel key) see nothing of them.
    def history(extra: dict[str, str]) -> list[Any]:
        resp = http.get("/channel/v1/history", params={"session_id": "s1"}, headers=extra)
        assert resp.status_code == 200, resp.text
        messages: list[Any] = resp.json()["messages"]
        return messages

    assert [m["role"] for m in history(headers)] == ["user", "assistant"]
    assert history({**headers, "x-visitor-id": "w" + secrets.token_hex(10)}) == []
    key = http.post(f"/admin/projects/{project_id}/channel-key", headers=_operator(stack))
    poll(
        lambda: (
            True
            if http.get(
                "/channel/v1/history",
                params={"session_id": "s1"},
                headers={"x-channel-key": key.json()["key"]},
            ).status_code
            == 200
            else None
        ),
        timeout=10,
    )
    assert history({"x-channel-key": key.json()["key"]}) == []

    # Per visitor per minute (2): the third is 429 with Retry-After; another visitor
    # still chats.
    limited = chat("again")
    if limited.status_code == 200:
        limited = chat("and again")
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert chat("hi", **{"x-visitor-id": "z" + secrets.token_hex(10)}).status_code == 200

    # Preflight from the allowed origin names the widget headers.
    pre = http.options(
        "/channel/v1/chat",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-widget-id, x-visitor-id",
        },
    )
    assert pre.headers["access-control-allow-origin"] == origin
    assert "X-Widget-Id" in pre.headers["access-control-allow-headers"]

    # A settings write keeps the id and cannot set one; rotating refuses the old id.
    forged = "sywg_" + secrets.token_urlsafe(24)
    patched = http.patch(
        f"/admin/projects/{project_id}",
        json={"settings": {"model": "mock-chat", "allowed_origins": [origin], "widget_id": forged}},
        headers=_operator(stack),
    )
    assert patched.json()["settings"]["widget_id"] == widget_id
    rotated = http.post(f"/admin/projects/{project_id}/widget", headers=_operator(stack))
    new_id = rotated.json()["widget_id"]
    assert new_id != widget_id
    assert (
        http.get(f"/admin/projects/{project_id}/widget", headers=_operator(stack)).json()[
            "widget_id"
        ]
        == new_id
    )
    poll(lambda: True if chat("x").status_code == 401 else None, timeout=10)


def test_console_channel_page(sqlite_stack: Stack, http: httpx.Client, browser: Any) -> None:  # noqa: F811
    origin = "https://blog.example.com"
    project_id, widget_id = _channel(http, sqlite_stack, origin)
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{sqlite_stack.base_url}/console/")
    page.get_by_label("Admin token or admin key").fill(sqlite_stack.config.admin_token or "")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API keys").wait_for()
    page.goto(f"{sqlite_stack.base_url}/console/#/channels")
    page.locator("#channel").select_option(project_id)
    _settled(page)
    assert page.locator("#widget-id").inner_text() == widget_id
    assert f'data-widget-id="{widget_id}"' in page.locator("#widget-snippet").inner_text()

    # Key: create, then reveal shows the same key the admin API opens.
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Create or rotate key").click()
    page.locator("#channel-key").wait_for(state="visible")
    key = page.locator("#channel-key").inner_text()
    assert key.startswith("sych_")
    shown = http.get(f"/admin/projects/{project_id}/channel-key", headers=_operator(sqlite_stack))
    assert shown.json()["key"] == key

    # Settings: a save keeps the widget id and the fields not on the form.
    page.get_by_label("Allowed origins (one per line)").fill(f"{origin}\nhttps://www.example.com")
    page.get_by_role("button", name="Save settings").click()

    def saved() -> dict[str, Any] | None:
        got = http.get(f"/admin/projects/{project_id}", headers=_operator(sqlite_stack)).json()
        settings: dict[str, Any] = got["settings"]
        return settings if len(settings.get("allowed_origins", [])) == 2 else None

    settings = poll(saved, timeout=10)
    assert settings["widget_id"] == widget_id and settings["model"] == "mock-chat"

    # Rotate the widget id from the page.
    page.get_by_role("button", name="Rotate widget id").click()
    poll(lambda: True if page.locator("#widget-id").inner_text() != widget_id else None, timeout=10)
    _settled(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "channels.png"), full_page=True)
    assert errors == []
    ctx.close()
