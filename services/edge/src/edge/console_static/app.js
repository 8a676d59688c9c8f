// Switchyard console: a small hash-routed app over /admin/* and /console/api/* with the
// session cookie. Every state-changing call sends the CSRF token; errors are shown in words.
import { escapeHtml as h, renderMarkdown } from "/console/md.js";
import { sseData } from "/console/sse.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const nav = document.getElementById("nav");
const PAGE = 20;
let pagers = 0;
let me = null;
let project = null; // the selected project id
let lastKey = ""; // a key created in this tab (memory only), for the playground
let collection = null; // the collection opened on the Collections page
let editing = null; // the gateway being edited on the Gateways page
let view = 0; // bumped on every page render, so a poll of an old page stops

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
  const form = body instanceof FormData; // a file upload: the browser sets the multipart type
  if (body !== undefined && !form) headers["content-type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["x-csrf-token"] = csrf();
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : form ? body : JSON.stringify(body), credentials: "same-origin" });
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
function el(html) { view++; main.innerHTML = html; main.focus(); }
function table(cols, rows, page, onPage) {
  const start = page * PAGE, slice = rows.slice(start, start + PAGE);
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  const body = slice.map((r) => `<tr>${cols.map((c) => `<td>${c[1](r)}</td>`).join("")}</tr>`).join("")
    || `<tr><td colspan="${cols.length}" class="muted">Nothing yet.</td></tr>`;
  const id = `pager-${++pagers}`; // each table binds only its own pager's buttons
  const pager = rows.length > PAGE ? `<div class="pager" id="${id}"><button type="button" data-page="${page - 1}" ${page ? "" : "disabled"}>Previous</button><span>Page ${page + 1} of ${pages}</span><button type="button" data-page="${page + 1}" ${page + 1 < pages ? "" : "disabled"}>Next</button></div>` : "";
  setTimeout(() => document.querySelectorAll(`#${id} [data-page]`).forEach((b) => b.addEventListener("click", () => onPage(Number(b.dataset.page)))));
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
      let text = "";
      for await (const chunk of sseData(resp)) {
        if (chunk.error) throw new Error(chunk.error.message);
        text += (chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content) || "";
        out.innerHTML = renderMarkdown(text);
      }
    }); });
  },
  async channels() {
    const list = (await projects()).filter((p) => p.type === "channel" || (me && !me.operator));
    if (!list.some((p) => p.id === project)) project = list.length ? list[0].id : null;
    const opts = list.map((p) => `<option value="${h(p.id)}" ${p.id === project ? "selected" : ""}>${h(p.name)} (${h(p.id)})</option>`).join("");
    if (!project) { el(`<h1>Channels</h1><p class="muted">No channel projects yet (create a project of type channel through the admin API).</p>`); return; }
    const ch = await api("GET", `/admin/projects/${project}`);
    const st = ch.settings || {};
    let widget = null;
    try { widget = await api("GET", `/admin/projects/${project}/widget`); } catch (e) { if (!e.message.startsWith("404")) throw e; }
    el(`<h1>Channels</h1><label>Channel <select id="channel">${opts}</select></label>
      <form id="ch-settings"><h2>Settings</h2>
        <label>Model <input name="model" value="${h(st.model || "")}" required></label>
        <label>System prompt <textarea name="system_prompt" rows="3">${h(st.system_prompt || "")}</textarea></label>
        <label><input type="checkbox" name="enabled" ${st.enabled === false ? "" : "checked"}> Enabled</label>
        <label>Allowed origins (one per line) <textarea name="origins" rows="2">${h((st.allowed_origins || []).join("\n"))}</textarea></label>
        <label>Widget messages per visitor per minute <input name="per_visitor" type="number" min="1" value="${h(st.widget_visitor_per_minute || 10)}"></label>
        <button>Save settings</button></form>
      <section aria-labelledby="key-h"><h2 id="key-h">Channel key (secret: keep it on your backend)</h2>
        <p class="secret" id="channel-key" hidden></p>
        <button type="button" id="reveal-key">Reveal key</button> <button type="button" id="rotate-key" class="danger">Create or rotate key</button></section>
      <section aria-labelledby="wg-h"><h2 id="wg-h">Embeddable widget</h2>
        ${widget ? `<p>Widget id <code id="widget-id">${h(widget.widget_id)}</code> (publishable). Paste this before &lt;/body&gt;:</p><pre><code id="widget-snippet">${h(widget.snippet)}</code></pre><button type="button" id="copy-snippet">Copy snippet</button>` : `<p class="muted">No widget id yet.</p>`}
        <button type="button" id="rotate-widget">${widget ? "Rotate widget id" : "Create widget id"}</button></section>`);
    document.getElementById("channel").addEventListener("change", (ev) => { project = ev.target.value; run(() => pages.channels()); });
    const f = document.getElementById("ch-settings");
    f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const settings = { ...st, model: f.model.value, enabled: f.enabled.checked, widget_visitor_per_minute: Number(f.per_visitor.value),
        allowed_origins: f.origins.value.split("\n").map((o) => o.trim()).filter(Boolean) };
      if (f.system_prompt.value) settings.system_prompt = f.system_prompt.value; else delete settings.system_prompt;
      await api("PATCH", `/admin/projects/${project}`, { settings }); await pages.channels();
    }); });
    const showKey = (k) => { const p = document.getElementById("channel-key"); p.textContent = k.key; p.hidden = false; };
    document.getElementById("reveal-key").addEventListener("click", () => run(async () => showKey(await api("GET", `/admin/projects/${project}/channel-key`))));
    document.getElementById("rotate-key").addEventListener("click", () => run(async () => {
      if (!confirm("Replace the channel key? The old one stops working at once.")) return;
      showKey(await api("POST", `/admin/projects/${project}/channel-key`));
    }));
    document.getElementById("rotate-widget").addEventListener("click", () => run(async () => { await api("POST", `/admin/projects/${project}/widget`); await pages.channels(); }));
    const copy = document.getElementById("copy-snippet");
    if (copy) copy.addEventListener("click", () => navigator.clipboard.writeText(widget.snippet).catch(() => showError("The browser refused the clipboard.")));
  },
  async gateways(page = 0) {
    const picker = await projectPicker();
    const [gws, cols, models, creds] = project ? await Promise.all([
      api("GET", `/admin/projects/${project}/gateways`).then((r) => r.data),
      api("GET", `/admin/projects/${project}/collections`).then((r) => r.data),
      api("GET", "/console/api/models").then((r) => r.data),
      api("GET", `/admin/projects/${project}/credentials`).then((r) => r.data),
    ]) : [[], [], [], []];
    const g = gws.find((x) => x.id === editing) || null;
    if (!g) editing = null;
    const p = (g && g.params) || {};
    const colName = (id) => { const c = cols.find((x) => x.id === id); return c ? c.name : id; };
    const credName = (id) => { const c = creds.find((x) => x.id === id); return c ? `${c.provider} …${c.last4}` : id; };
    // A gateway on a provider credential (BYOK) names that endpoint's model, not a catalog one.
    const byok = Boolean(g && g.credential_id);
    const extra = (sel) => (sel && !models.some((m) => m.id === sel) ? `<option selected>${h(sel)}</option>` : "");
    const modelOpts = (sel, none) => (none ? `<option value="">${h(none)}</option>` : "") + extra(sel) + models.map((m) => `<option ${m.id === sel ? "selected" : ""}>${h(m.id)}</option>`).join("");
    const knobs = ["temperature", "top_p", "max_tokens", "stop"];
    const num = (v) => (v === undefined || v === null ? "" : h(v));
    el(`<h1>Gateways</h1>${picker}
      <p class="muted">A gateway is a ready-made model: instructions, a model, fixed parameters, optional knowledge and routing. Call it with <code>model="&lt;name&gt;:&lt;short&gt;"</code>.</p>
      ${table([
        ["Name", (x) => `<code>${h(x.short_name)}</code>`], ["Model", (x) => h(x.routing ? `auto: ${x.routing.cheap} / ${x.routing.strong}` : x.credential_id ? `${x.model} via ${credName(x.credential_id)}` : x.model)],
        ["Collection", (x) => (x.collection_id ? `${h(colName(x.collection_id))} (top ${h(x.top_k)}, ≥ ${h(x.min_score)})` : "")],
        ["Overridable", (x) => h((x.overridable || []).join(", "))],
        ["", (x) => `<button type="button" data-edit="${h(x.id)}" aria-label="Edit ${h(x.name)}">Edit</button> <button type="button" data-snippet="${h(x.id)}" aria-label="Snippet for ${h(x.name)}">Snippet</button> <button type="button" class="danger" data-delete="${h(x.id)}" aria-label="Delete ${h(x.name)}">Delete</button>`],
      ], gws, page, (n) => pages.gateways(n))}
      <div id="gw-snippet"></div>
      <form id="gw-form"><h2>${g ? `Edit gateway ${h(g.short_name)}` : "Create a gateway"}</h2>
        <label>Name <input name="name" required maxlength="64" pattern="[a-z0-9-]+" title="lower-case letters, digits and -" value="${h(g ? g.name : "")}"></label>
        <label>Instructions <textarea name="instructions" rows="3">${h((g && g.instructions) || "")}</textarea></label>
        <label>Model <select name="model" required>${modelOpts(g && !byok ? g.model : "")}</select></label>
        <fieldset><legend>Or your own provider key (BYOK)</legend>
          <label>Provider credential <select name="credential"><option value="">None: the catalog model above</option>${creds.map((c) => `<option value="${h(c.id)}" ${g && g.credential_id === c.id ? "selected" : ""}>${h(credName(c.id))}${c.base_url ? ` at ${h(c.base_url)}` : ""}</option>`).join("")}</select></label>
          <label>Model at the credential's endpoint <input name="credential_model" maxlength="200" value="${h(byok ? g.model : "")}" placeholder="the provider's model name"></label>
          <p class="muted">${creds.length ? "With a credential, calls go to its provider with its key, under the model name given here." : "This project has no provider credentials yet (add one on the Credentials page)."}</p></fieldset>
        <fieldset><legend>Parameters (blank: the model's default)</legend>
          <label>Temperature <input name="temperature" type="number" min="0" max="2" step="0.05" value="${num(p.temperature)}"></label>
          <label>Top p <input name="top_p" type="number" min="0" max="1" step="0.05" value="${num(p.top_p)}"></label>
          <label>Max tokens <input name="max_tokens" type="number" min="1" step="1" value="${num(p.max_tokens)}"></label>
          <label>Stop (comma-separated) <input name="stop" value="${h([].concat(p.stop || []).join(","))}"></label>
          <label>Prefill (the answer starts with this) <textarea name="prefill" rows="2">${h(p.prefill || "")}</textarea></label></fieldset>
        <fieldset><legend>Knowledge</legend>
          <label>Collection <select name="collection"><option value="">None</option>${cols.map((c) => `<option value="${h(c.id)}" ${g && g.collection_id === c.id ? "selected" : ""}>${h(c.name)}</option>`).join("")}</select></label>
          <label>Top k <input name="top_k" type="number" min="1" max="50" step="1" value="${h(g ? g.top_k : 5)}"></label>
          <label>Minimum score <input name="min_score" type="number" min="0" max="1" step="0.01" value="${h(g ? g.min_score : 0)}"></label>
          <label>When retrieval fails <select name="on_rag_failure"><option value="fail">fail the call (503)</option><option value="ungrounded" ${g && g.on_rag_failure === "ungrounded" ? "selected" : ""}>answer without sources</option></select></label></fieldset>
        <fieldset><legend>A request may override</legend>${knobs.map((k) => `<label><input type="checkbox" name="overridable" value="${k}" ${g && (g.overridable || []).includes(k) ? "checked" : ""}> ${k}</label>`).join("")}</fieldset>
        <fieldset><legend>Routing</legend>
          <label><input type="checkbox" name="auto" ${g && g.routing ? "checked" : ""}> Auto: a cheap model for simple requests, a strong one for hard ones</label>
          <label>Cheap model <select name="cheap">${modelOpts(g && g.routing ? g.routing.cheap : "", "—")}</select></label>
          <label>Strong model <select name="strong">${modelOpts(g && g.routing ? g.routing.strong : "", "—")}</select></label></fieldset>
        <button>${g ? "Save gateway" : "Create gateway"}</button>${g ? ` <button type="button" id="gw-cancel">Cancel</button>` : ""}</form>`);
    bindPicker(() => { editing = null; return pages.gateways(); });
    const snippet = (x) => {
      const code = `from openai import OpenAI\n\nclient = OpenAI(base_url="${location.origin}/v1", api_key="YOUR_SWITCHYARD_KEY")\nreply = client.chat.completions.create(\n    model="${x.short_name}",\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)`;
      document.getElementById("gw-snippet").innerHTML = `<h2>Call ${h(x.short_name)} with the OpenAI SDK</h2><pre><code>pip install openai</code></pre><pre><code id="gw-code">${h(code)}</code></pre><button type="button" id="copy-gw">Copy snippet</button>`;
      document.getElementById("copy-gw").addEventListener("click", () => navigator.clipboard.writeText(code).catch(() => showError("The browser refused the clipboard.")));
    };
    main.querySelectorAll("[data-snippet]").forEach((b) => b.addEventListener("click", () => snippet(gws.find((x) => x.id === b.dataset.snippet))));
    main.querySelectorAll("[data-edit]").forEach((b) => b.addEventListener("click", () => { editing = b.dataset.edit; run(() => pages.gateways(page)); }));
    main.querySelectorAll("[data-delete]").forEach((b) => b.addEventListener("click", () => run(async () => {
      if (!confirm("Delete this gateway? Calls naming it fail at once.")) return;
      await api("DELETE", `/admin/projects/${project}/gateways/${b.dataset.delete}`);
      if (editing === b.dataset.delete) editing = null;
      await pages.gateways(page);
    })));
    const cancel = document.getElementById("gw-cancel");
    if (cancel) cancel.addEventListener("click", () => { editing = null; run(() => pages.gateways(page)); });
    const f = document.getElementById("gw-form");
    f.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const params = {};
      for (const k of ["temperature", "top_p"]) if (f[k].value !== "") params[k] = Number(f[k].value);
      if (f.max_tokens.value !== "") params.max_tokens = parseInt(f.max_tokens.value, 10);
      const stop = f.stop.value.split(",").map((x) => x.trim()).filter(Boolean);
      if (stop.length) params.stop = stop;
      if (f.prefill.value) params.prefill = f.prefill.value;
      if (f.auto.checked && !(f.cheap.value && f.strong.value)) throw new Error("Auto routing needs both a cheap and a strong model.");
      const credential = f.credential.value || null;
      const body = {
        name: f.name.value.trim(), instructions: f.instructions.value || null, params,
        model: credential ? f.credential_model.value.trim() : f.model.value, credential_id: credential,
        collection_id: f.collection.value || null, top_k: parseInt(f.top_k.value || "5", 10), min_score: Number(f.min_score.value || 0),
        on_rag_failure: f.on_rag_failure.value, overridable: [...f.querySelectorAll("[name=overridable]:checked")].map((c) => c.value),
        routing: f.auto.checked ? { policy: "auto", cheap: f.cheap.value, strong: f.strong.value } : null,
      };
      const saved = g ? await api("PATCH", `/admin/projects/${project}/gateways/${g.id}`, body) : await api("POST", `/admin/projects/${project}/gateways`, body);
      editing = null;
      await pages.gateways(page);
      snippet(saved);
    }); });
  },
  async collections(page = 0) {
    const picker = await projectPicker();
    const base = `/admin/projects/${project}/collections`;
    const cols = project ? (await api("GET", base)).data : [];
    const c = cols.find((x) => x.id === collection) || null;
    if (!c) collection = null;
    el(`<h1>Knowledge collections</h1>${picker}
      ${table([
        ["Name", (x) => h(x.name)], ["Description", (x) => h(x.description)], ["Documents", (x) => `<span data-count="${h(x.id)}">${h(x.document_count)}</span>`],
        ["Embedder", (x) => `<code>${h(x.embedding_model)}</code>`], ["Created", (x) => h(new Date(x.created_at * 1000).toISOString().slice(0, 16).replace("T", " "))],
        ["", (x) => `<button type="button" data-open="${h(x.id)}" aria-label="Open ${h(x.name)}">Open</button> <button type="button" class="danger" data-delete="${h(x.id)}" aria-label="Delete ${h(x.name)}">Delete</button>`],
      ], cols, page, (n) => pages.collections(n))}
      <form id="new-col"><h2>Create a collection</h2>
        <label>Collection name <input name="name" required maxlength="255"></label>
        <label>Collection description <input name="description" maxlength="4096"></label><button>Create collection</button></form>
      ${c ? `<section aria-labelledby="docs-h"><h2 id="docs-h">Documents of ${h(c.name)}</h2><div id="docs"></div>
        <form id="upload"><h2>Add a document</h2><p class="muted">Paste text, or pick a .txt, .md or .pdf file (at most 10 MiB).</p>
          <label>Document name <input name="name" maxlength="255"></label>
          <label>Text <textarea name="text" rows="4"></textarea></label>
          <label>Or a file <input name="file" type="file" accept=".txt,.md,.pdf,text/plain,text/markdown,application/pdf"></label>
          <button>Upload document</button></form>
        <form id="query"><h2>Try a query</h2><label>Query <input name="q" required maxlength="32768"></label>
          <label>Top k <input name="top_k" type="number" min="1" max="50" value="5"></label><button>Search</button></form>
        <div id="hits" aria-live="polite"></div></section>` : ""}`);
    bindPicker(() => { collection = null; return pages.collections(); });
    main.querySelectorAll("[data-open]").forEach((b) => b.addEventListener("click", () => { collection = b.dataset.open; run(() => pages.collections(page)); }));
    main.querySelectorAll("[data-delete]").forEach((b) => b.addEventListener("click", () => run(async () => {
      if (!confirm("Delete this collection with all its documents?")) return;
      await api("DELETE", `${base}/${b.dataset.delete}`); await pages.collections(page);
    })));
    const nf = document.getElementById("new-col");
    nf.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const made = await api("POST", base, { name: nf.name.value, description: nf.description.value });
      collection = made.id; await pages.collections(page);
    }); });
    if (!c) return;
    const mine = view;
    const docsUrl = `${base}/${c.id}/documents`;
    const pct = (d) => (d.status === "running" ? ` ${Math.round(d.progress * 100)}%` : "");
    const drawDocs = (docs, dpage = 0) => {
      document.getElementById("docs").innerHTML = table([
        ["Name", (d) => h(d.name)], ["Status", (d) => `<span class="status" data-status="${h(d.status)}">${h(d.status)}${pct(d)}</span>${d.error ? ` <span class="muted">${h(d.error)}</span>` : ""}`],
        ["Chunks", (d) => h(d.chunk_count)], ["Bytes", (d) => h(d.bytes)], ["Updated", (d) => h(new Date(d.updated_at * 1000).toISOString().slice(11, 19))],
        ["", (d) => `<button type="button" class="danger" data-deldoc="${h(d.id)}" aria-label="Delete document ${h(d.name)}">Delete</button>`],
      ], docs, dpage, (n) => drawDocs(docs, n));
      document.querySelectorAll("[data-deldoc]").forEach((b) => b.addEventListener("click", () => run(async () => {
        if (!confirm("Delete this document?")) return;
        await api("DELETE", `${docsUrl}/${b.dataset.deldoc}`); tick();
      })));
    };
    // Poll while a document is being ingested; stop when every one is settled or the page
    // changed. A failed poll (rag busy: 503) is shown in words and retried after 2 s.
    let timer = null, failed = false;
    const schedule = (ms) => { clearTimeout(timer); timer = setTimeout(tick, ms); };
    const refresh = async () => {
      const docs = (await api("GET", docsUrl)).data;
      if (view !== mine) return;
      drawDocs(docs);
      const count = main.querySelector(`[data-count="${CSS.escape(c.id)}"]`);
      if (count) count.textContent = String(docs.length);
      if (docs.some((d) => d.status === "queued" || d.status === "running")) schedule(500);
    };
    function tick() {
      if (view !== mine) return;
      refresh().then(() => { if (failed) { failed = false; showError(""); } }, (e) => {
        if (view !== mine) return;
        failed = true; showError(`${e.message} (retrying)`); schedule(2000);
      });
    }
    await refresh();
    const uf = document.getElementById("upload");
    uf.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const file = uf.file.files[0];
      let body;
      if (file) {
        body = new FormData(); body.append("file", file);
        if (uf.name.value) body.append("name", uf.name.value);
      } else {
        if (!uf.text.value.trim()) throw new Error("Paste some text or pick a file to upload.");
        body = { name: uf.name.value || "pasted.txt", text: uf.text.value };
      }
      const d = await api("POST", docsUrl, body);
      uf.reset();
      if (d.created === false) showError(`This collection already holds that text, as "${d.name}".`);
      tick();
    }); });
    const qf = document.getElementById("query");
    qf.addEventListener("submit", (ev) => { ev.preventDefault(); run(async () => {
      const r = await api("POST", `${base}/${c.id}/query`, { query: qf.q.value, top_k: parseInt(qf.top_k.value || "5", 10) });
      document.getElementById("hits").innerHTML = r.data.length ? table([["Score", (x) => h(x.score.toFixed(3))], ["Document", (x) => h(x.document_name)], ["Chunk", (x) => h(x.chunk_index)], ["Text", (x) => h(x.text)]], r.data, 0, () => {})
        : `<p class="muted">No chunk matched (only ready documents are searched).</p>`;
    }); });
  },
  async endpoints() {
    const picker = await projectPicker();
    const list = project ? (await api("GET", `/admin/projects/${project}/endpoints`)).data : [];
    el(`<h1>Endpoints</h1>${picker}${table([["Slug", (e) => `<code>${h(e.slug)}</code>`], ["Model", (e) => h(e.model || "")]], list, 0, () => {})}
      <p class="muted">Configured models are on the <a href="#/gateways">Gateways</a> page, knowledge on <a href="#/collections">Collections</a>.</p>`);
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
