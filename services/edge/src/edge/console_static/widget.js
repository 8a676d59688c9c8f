// The embeddable channel widget (docs/widget.md). Served by the edge as
// /channel/v1/widget.js: md.js's renderMarkdown (escape first, then a small Markdown
// subset), sse.js's sseData and this file wrapped in one classic script. It reads its
// widget id from its own tag, keeps a random visitor id and the session id in the
// visitor's localStorage, sends the page URL and title as context, streams each reply
// as it arrives and never holds the channel's secret key.
const tag = document.currentScript;
const widgetId = tag && tag.dataset.widgetId;
if (!tag || !widgetId) {
  throw new Error("switchyard widget: the script tag needs data-widget-id");
}
const base = new URL(tag.src).origin + "/channel/v1";
const store = window.localStorage;
const NS = "switchyard-widget:" + widgetId + ":";

function randomId() {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
function kept(name) {
  let value = store.getItem(NS + name);
  if (!value) {
    value = randomId();
    store.setItem(NS + name, value);
  }
  return value;
}
const visitorId = kept("visitor");
const sessionId = kept("session");

const host = document.createElement("div");
host.className = "switchyard-widget";
document.body.appendChild(host);
const root = host.attachShadow({ mode: "open" });
root.innerHTML = `
<style>
  .panel { position: fixed; right: 16px; bottom: 16px; width: min(360px, calc(100vw - 32px));
    max-height: 70vh; display: flex; flex-direction: column; font: 14px/1.4 system-ui, sans-serif;
    background: #fff; color: #111; border: 1px solid #ccc; border-radius: 8px;
    box-shadow: 0 4px 16px rgba(0,0,0,.15); }
  .log { overflow-y: auto; padding: 8px; flex: 1; }
  .msg { margin: 4px 0; padding: 6px 8px; border-radius: 6px; }
  .user { background: #e8f0fe; margin-left: 24px; }
  .assistant { background: #f3f3f3; margin-right: 24px; }
  .assistant[aria-busy="true"]:empty::after { content: "…"; color: #666; }
  .error { color: #a00; }
  form { display: flex; gap: 4px; padding: 8px; border-top: 1px solid #ddd; }
  textarea { flex: 1; resize: none; font: inherit; }
  p { margin: 0 0 4px; }
  pre { overflow-x: auto; }
</style>
<section class="panel" role="region" aria-label="Chat">
  <div class="log" role="log" aria-live="polite"></div>
  <form>
    <label for="sy-input" hidden>Your message</label>
    <textarea id="sy-input" rows="2" maxlength="2000" placeholder="Ask a question"></textarea>
    <button type="submit">Send</button>
  </form>
</section>`;
const log = root.querySelector(".log");
const form = root.querySelector("form");
const input = root.querySelector("textarea");
const button = root.querySelector("button");

function render(div, text) {
  div.innerHTML = renderMarkdown(text); // escaped first: no HTML from the model
  log.scrollTop = log.scrollHeight;
}
function show(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  log.appendChild(div);
  if (role === "assistant") {
    render(div, text);
  } else {
    div.textContent = text;
    log.scrollTop = log.scrollHeight;
  }
  return div;
}
const headers = { "content-type": "application/json", "x-widget-id": widgetId, "x-visitor-id": visitorId };

// What a visitor reads for a refusal: the edge's own words where they are meant for
// visitors (403: origin, disabled site, credits; 500: the provider failed), ours for 429.
const TOO_FAST = "You are sending messages too fast. Please wait a moment and try again.";
const FALLBACK = {
  403: "This chat is not available on this page.",
  500: "The assistant could not answer. Please try again later.",
};
function failure(status, error) {
  if (status === 429) return TOO_FAST;
  return error || FALLBACK[status] || "The chat is unavailable (" + status + ").";
}

async function request(path, init) {
  let resp;
  try {
    resp = await fetch(base + path, { ...init, headers, credentials: "omit" });
  } catch {
    // A refused origin gets no CORS headers, so the browser hides the answer.
    throw new Error("The chat is not available on this page.");
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new Error(failure(resp.status, body.error));
  }
  return resp;
}

async function loadHistory() {
  try {
    const resp = await request("/history?session_id=" + encodeURIComponent(sessionId), { method: "GET" });
    for (const m of (await resp.json()).messages) show(m.role, m.content);
  } catch (err) {
    show("error", err.message);
  }
}

// Streams one reply into `div` (aria-busy while it grows); throws with the words to show.
async function stream(message, div) {
  const resp = await request("/chat", {
    method: "POST",
    body: JSON.stringify({
      message,
      session_id: sessionId,
      stream: true,
      context: { page_url: location.href, page_title: document.title },
    }),
  });
  let text = "";
  try {
    for await (const event of sseData(resp)) {
      if (event.error) throw new Error(event.error);
      if (event.delta) render(div, (text += event.delta));
      if (event.done) return render(div, event.reply);
    }
  } catch (err) {
    throw err instanceof TypeError ? new Error("The connection was lost. Please try again.") : err;
  }
  throw new Error("The reply was cut off. Please try again.");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = input.value.trim();
  if (!message) return;
  input.value = "";
  show("user", message);
  button.disabled = true;
  const reply = show("assistant", "");
  reply.setAttribute("aria-busy", "true");
  try {
    await stream(message, reply);
  } catch (err) {
    if (!reply.textContent) reply.remove();
    show("error", err.message);
  } finally {
    reply.removeAttribute("aria-busy");
    button.disabled = false;
    input.focus();
  }
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});
loadHistory();
