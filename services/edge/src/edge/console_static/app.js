// Switchyard console: a small hash-routed app over /admin/* and /console/api/* with the
// session cookie. Every state-changing call sends the CSRF token; errors are shown in words.
import { escapeHtml as h, renderMarkdown } from "/console/md.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const nav = document.getElementById("nav");
const PAGE = 20;
let me = null;
let project = null; // the selected project id
let lastKey = ""; // a key created in this tab (memory only), for the playground

function csrf() {
  const m = document.cookie.match(/(?:^|; )sy_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}
function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = !msg;
}
async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["x-csrf-token"] = csrf();
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch (e) {
    throw new Error(`Network error calling ${path}: ${e.message}`);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = (data && (typeof data.error === "string" ? data.error : data.error && data.error.message)) || text || resp.statusText;
    if (resp.status === 401 && path !== "/console/api/login") { me = null; }
    throw new Error(`${resp.status}: ${msg}`);
  }
  return data;
}
function el(html) { main.innerHTML = html; main.focus(); }
function table(cols, rows, page, onPage) {
  const start = page * PAGE, slice = rows.slice(start, start + PAGE);
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  const body = slice.map((r) => `<tr>${cols.map((c) => `<td>${c[1](r)}</td>`).join("")}</tr>`).join("")
    || `<tr><td colspan="${cols.length}" class="muted">Nothing yet.</td></tr>`;
  const pager = rows.length > PAGE ? `<div class="pager"><button type="button" data-page="${page - 1}" ${page ? "" : "disabled"}>Previous</button><span>Page ${page + 1} of ${pages}</span><button type="button" data-page="${page + 1}" ${page + 1 < pages ? "" : "disabled"}>Next</button></div>` : "";
  setTimeout(() => main.querySelectorAll("[data-page]").forEach((b) => b.addEventListener("click", () => onPage(Number(b.dataset.page)))));
  return `<div class="wrap"><table><thead><tr>${cols.map((c) => `<th scope="col">${h(c[0])}</th>`).join("")}</tr></thead><tbody>${body}</tbody></table></div>${pager}`;
}
async function projects() {
  if (me && !me.operator) return [{ id: me.project_id, name: "(this key's project)" }];
  return (await api("GET", "/admin/projects")).data;
}
async function projectPicker() {
  const list = await projects();
  if (!project || !list.some((p) => p.id === project)) project = list.length ? list[0].id : null;
  const opts = list.map((p) => `<option value="${h(p.id)}" ${p.id === project ? "selected" : ""}>${h(p.name)} (${h(p.id)})</option>`).join("");
  return `<label>Project <select id="project">${opts}</select></label>`;
}
function bindPicker(rerender) {
  const s = document.getElementById("project");
  if (s) s.addEventListener("change", () => { project = s.value; run(rerender); });
}

const pages = {
  async projects(page = 0) {
    const list = await projects();
    el(`<h1>Projects</h1>${table([["Name", (p) => h(p.name)], ["Id", (p) => `<code>${h(p.id)}</code>`], ["Type", (p) => h(p.type || "")]], list, page, (n) => pages.projects(n))}
      ${me.operator ? `<form id="new-project"><h2>New project</h2><label>Name <input name="name" required maxlength="200"></label><button>Create project</button></form>` : ""}`);
    const f = document.getElementById("new-project");
    if (f) f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await run(async () => { const p = await api("POST", "/admin/projects", { name: f.name.value }); project = p.id; await pages.projects(); });
    });
  },
  async keys(page = 0) {
    const picker = await projectPicker();
    const keys = project ? (await api("GET", `/admin/projects/${project}/keys`)).data : [];
    el(`<h1>API keys</h1>${picker}
      <div id="created"></div>
      ${table([
        ["Name", (k) => h(k.name)], ["Prefix", (k) => `<code>${h(k.prefix)}</code>`], ["Scopes", (k) => h(k.scopes.join(", "))],
        ["Description", (k) => h(k.description || "")], ["Expires", (k) => h(k.expires_at || "never")],
        ["State", (k) => (k.revoked_at ? "revoked" : "active")],
        ["", (k) => `${k.revoked_at ? "" : `<button type="button" data-revoke="${h(k.id)}" aria-label="Revoke ${h(k.name)}">Revoke</button>`} <button type="button" class="danger" data-delete="${h(k.id)}" aria-label="Delete ${h(k.name)}">Delete</button>`],
      ], keys, page, (n) => pages.keys(n))}
      <form id="new-key"><h2>Create a key</h2>
        <label>Name <input name="name" required maxlength="200"></label>
        <label>Description <input name="description" maxlength="1000"></label>
        <fieldset><legend>Scopes</legend>${["chat", "embeddings", "responses", "admin"].map((s) => `<label><input type="checkbox" name="scope" value="${s}" ${s === "chat" ? "checked" : ""}> ${s}</label>`).join("")}</fieldset>
        <label>Valid for <select name="validity"><option value="">No expiry</option><option value="86400">1 day</option><option value="604800">7 days</option><option value="2592000">30 days</option><option value="7776000">90 days</option></select></label>
        <button>Create key</button></form>`);
    bindPicker(() => pages.keys());
    const f = document.getElementById("new-key");
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await run(async () => {
        const scopes = [...f.querySelectorAll("[name=scope]:checked")].map((c) => c.value);
        const body = { name: f.name.value, scopes };
        if (f.description.value) body.description = f.description.value;
        if (f.validity.value) body.expires_in = Number(f.validity.value);
        const k = await api("POST", `/admin/projects/${project}/keys`, body);
        lastKey = k.key;
        await pages.keys();
        document.getElementById("created").innerHTML = `<h2>Key created: copy it now, it is shown once</h2>
          <p class="secret" id="new-key-value">${h(k.key)}</p><button type="button" id="copy-key">Copy key</button>`;
        document.getElementById("copy-key").addEventListener("click", async () => {
          try { await navigator.clipboard.writeText(k.key); document.getElementById("copy-key").textContent = "Copied"; }
          catch { showError("The browser refused the clipboard: select the key and copy it by hand."); }
        });
        document.getElementById("copy-key").focus();
      });
    });
    main.querySelectorAll("[data-revoke]").forEach((b) => b.addEventListener("click", () => run(async () => { await api("POST", `/admin/projects/${project}/keys/${b.dataset.revoke}/revoke`); await pages.keys(page); })));
    main.querySelectorAll("[data-delete]").forEach((b) => b.addEventListener("click", () => run(async () => {
      if (!confirm("Delete this key for good?")) return;
      await api("DELETE", `/admin/projects/${project}/keys/${b.dataset.delete}`); await pages.keys(page);
    })));
  },
  async credentials() {
    const picker = await projectPicker();
    const creds = project ? (await api("GET", `/admin/projects/${project}/credentials`)).data : [];
    el(`<h1>Provider credentials</h1>${picker}<p class="muted">Secrets are sealed at rest and never shown again: only a fingerprint and the last four characters.</p>
      ${table([["Provider", (c) => h(c.provider)], ["Key", (c) => `…${h(c.last4)}`], ["Fingerprint", (c) => `<code>${h(c.fingerprint)}</code>`], ["Base URL", (c) => h(c.base_url || "")], ["Updated", (c) => h(c.updated_at)]], creds, 0, () => {})}
      <form id="new-cred"><h2>Add or rotate a credential</h2><p class="muted">Saving a provider that exists replaces (rotates) its key.</p>
        <label>Provider <input name="provider" required placeholder="openai"></label>
        <label>API key <input name="api_key" type="password" required autocomplete="off"></label>
        <label>Base URL (optional) <input name="base_url" type="url"></label><button>Save credential</button></form>`);
    bindPicker(() => pages.credentials());
    const f = document.getElementById("new-cred");
    f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const body = { provider: f.provider.value, api_key: f.api_key.value };
      if (f.base_url.value) body.base_url = f.base_url.value;
      await api("POST", `/admin/projects/${project}/credentials`, body); await pages.credentials();
    }); });
  },
  async models(page = 0) {
    const list = (await api("GET", "/console/api/models")).data;
    const per1m = (p) => (Number(p) * 1e6).toFixed(4);
    el(`<h1>Models</h1><p class="muted">Prices in USD per million tokens.</p>${table([
      ["Model", (m) => `<code>${h(m.id)}</code>`], ["Provider", (m) => h(m.provider || "")], ["Input", (m) => per1m(m.pricing.input)], ["Output", (m) => per1m(m.pricing.output)],
      ["Context", (m) => h(m.context_window)], ["Capabilities", (m) => h((m.capabilities || []).join(", "))]], list, page, (n) => pages.models(n))}`);
  },
  async usage(group = "model") {
    const picker = await projectPicker();
    const u = project ? await api("GET", `/admin/projects/${project}/usage?group_by=${group}`) : { rows: [], total: "0" };
    const max = Math.max(1e-12, ...u.rows.map((r) => Number(r.amount)));
    el(`<h1>Usage</h1>${picker}
      <label>Group by <select id="group">${["day", "model", "key", "endpoint"].map((g) => `<option ${g === group ? "selected" : ""}>${g}</option>`).join("")}</select></label>
      <p>Total this month: <strong id="usage-total">$${h(u.total)}</strong></p>
      ${table([[group, (r) => h(r.group)], ["Requests", (r) => h(r.requests)], ["Prompt tokens", (r) => h(r.prompt_tokens)], ["Completion tokens", (r) => h(r.completion_tokens)],
        ["Cost (USD)", (r) => `${h(r.amount)} <span class="bar" style="width:${Math.round((Number(r.amount) / max) * 120)}px" aria-hidden="true"></span>`]], u.rows, 0, () => {})}
      <form id="lookup"><h2>One request</h2><label>Request id <input name="rid" required></label><button>Show line items</button></form><div id="items"></div>`);
    bindPicker(() => pages.usage(group));
    document.getElementById("group").addEventListener("change", (e) => run(() => pages.usage(e.target.value)));
    const f = document.getElementById("lookup");
    f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const r = await api("GET", `/admin/projects/${project}/usage/requests/${encodeURIComponent(f.rid.value.trim())}`);
      document.getElementById("items").innerHTML = `<p>Total: <strong id="request-total">$${h(r.total_amount)}</strong></p>` + table([["Operation", (e) => h(e.operation)], ["Model", (e) => h(e.model)], ["Prompt", (e) => h(e.prompt_tokens)], ["Completion", (e) => h(e.completion_tokens)], ["Amount", (e) => h(e.total_amount)]], r.entries, 0, () => {});
    }); });
  },
  async connect() {
    const list = (await api("GET", "/console/api/models")).data;
    el(`<h1>Connect</h1><form id="conn"><label>Model <select name="model">${list.map((m) => `<option>${h(m.id)}</option>`).join("")}</select></label>
      <label>Language <select name="lang"><option value="python">Python</option><option value="node">Node</option><option value="curl">curl</option></select></label></form><div id="snippet"></div>`);
    const f = document.getElementById("conn");
    const draw = () => {
      const m = list.find((x) => x.id === f.model.value) || list[0];
      if (!m) { document.getElementById("snippet").textContent = "No models in the catalog."; return; }
      const base = `${location.origin}/v1`;
      const snippets = {
        python: ["pip install openai", `from openai import OpenAI\n\nclient = OpenAI(base_url="${base}", api_key="YOUR_SWITCHYARD_KEY")\nreply = client.chat.completions.create(\n    model="${m.id}",\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)`],
        node: ["npm install openai", `import OpenAI from "openai";\n\nconst client = new OpenAI({ baseURL: "${base}", apiKey: "YOUR_SWITCHYARD_KEY" });\nconst reply = await client.chat.completions.create({\n  model: "${m.id}",\n  messages: [{ role: "user", content: "Hello" }],\n});\nconsole.log(reply.choices[0].message.content);`],
        curl: ["(curl is preinstalled on most systems)", `curl ${base}/chat/completions \\\n  -H "Authorization: Bearer YOUR_SWITCHYARD_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model": "${m.id}", "messages": [{"role": "user", "content": "Hello"}]}'`],
      };
      const [install, code] = snippets[f.lang.value];
      document.getElementById("snippet").innerHTML = `<p>Input: <strong>$${(Number(m.pricing.input) * 1e6).toFixed(4)}</strong> / 1M tokens · Output: <strong>$${(Number(m.pricing.output) * 1e6).toFixed(4)}</strong> / 1M tokens · Context: ${h(m.context_window)}</p>
        <h2>Install</h2><pre><code>${h(install)}</code></pre><h2>Code</h2><pre><code id="code">${h(code)}</code></pre><button type="button" id="copy-code">Copy snippet</button>`;
      document.getElementById("copy-code").addEventListener("click", () => navigator.clipboard.writeText(code).catch(() => showError("The browser refused the clipboard.")));
    };
    f.addEventListener("change", draw);
    draw();
  },
  async playground() {
    const list = (await api("GET", "/console/api/models")).data;
    el(`<h1>Playground</h1><form id="pg"><label>API key (kept in this tab's memory only) <input name="key" type="password" autocomplete="off" value="${h(lastKey)}" required></label>
      <label>Model <select name="model">${list.map((m) => `<option>${h(m.id)}</option>`).join("")}</select></label>
      <label>Message <textarea name="msg" required rows="3"></textarea></label><button>Send</button></form>
      <div class="chat" id="reply" aria-live="polite"></div>`);
    const f = document.getElementById("pg");
    f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const out = document.getElementById("reply");
      out.textContent = "";
      const resp = await fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${f.key.value}` },
        body: JSON.stringify({ model: f.model.value, stream: true, messages: [{ role: "user", content: f.msg.value }] }) });
      if (!resp.ok) { const t = await resp.text(); let m = t; try { m = JSON.parse(t).error.message; } catch {} throw new Error(`${resp.status}: ${m}`); }
      const reader = resp.body.getReader(); const dec = new TextDecoder(); let buf = "", text = "";
      for (;;) {
        const { done, value } = await reader.read(); if (done) break;
        buf += dec.decode(value, { stream: true });
        const lines = buf.split("\n"); buf = lines.pop();
        for (const line of lines) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) throw new Error(chunk.error.message);
          text += (chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content) || "";
          out.innerHTML = renderMarkdown(text);
        }
      }
    }); });
  },
  async endpoints() {
    const picker = await projectPicker();
    const list = project ? (await api("GET", `/admin/projects/${project}/endpoints`)).data : [];
    el(`<h1>Endpoints</h1>${picker}${table([["Slug", (e) => `<code>${h(e.slug)}</code>`], ["Model", (e) => h(e.model || "")]], list, 0, () => {})}
      <p class="muted">Gateways, knowledge collections and channels get their pages here as their APIs land (see docs/console.md).</p>`);
    bindPicker(() => pages.endpoints());
  },
};

let busy = 0;
async function run(fn) {
  showError("");
  main.setAttribute("aria-busy", String(++busy > 0));
  try { await fn(); } catch (e) {
    showError(e.message);
    if (!me) renderLogin();
  } finally {
    main.setAttribute("aria-busy", String(--busy > 0));
  }
}
function renderLogin() {
  nav.hidden = true;
  el(`<h1>Sign in</h1><form id="login"><label>Admin token or admin key <input name="token" type="password" required autocomplete="off"></label><button>Sign in</button></form>`);
  const f = document.getElementById("login");
  f.token.focus();
  f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
    me = await api("POST", "/console/api/login", { token: f.token.value });
    route();
  }); });
}
async function route() {
  if (!me) {
    try { me = await api("GET", "/console/api/session"); } catch { return renderLogin(); }
  }
  nav.hidden = false;
  const name = (location.hash.replace(/^#\//, "") || "keys").split("?")[0];
  nav.querySelectorAll("a").forEach((a) => a.setAttribute("aria-current", a.getAttribute("href") === `#/${name}` ? "page" : "false"));
  await run(() => (pages[name] || pages.keys)());
}
document.getElementById("logout").addEventListener("click", () => run(async () => { await api("POST", "/console/api/logout"); me = null; renderLogin(); }));
window.addEventListener("hashchange", route);
route();
