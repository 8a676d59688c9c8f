// A tiny, safe Markdown subset: text is escaped first, then **bold**, *em*, `code`,
// fenced code blocks, [links](https://...) (http/https only) and line breaks. No HTML
// from the input ever reaches the page. Shared by the console and the widget.
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]);
}
function inline(s) {
  return s
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/\*([^*]+)\*/g, "<em>$1</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g,
      (_m, t, u) => `<a href="${u}" rel="noopener noreferrer nofollow" target="_blank">${t}</a>`);
}
export function renderMarkdown(src) {
  const parts = String(src).split(/```/);
  return parts
    .map((part, i) => {
      const safe = escapeHtml(part);
      if (i % 2 === 1) return `<pre><code>${safe.replace(/^[a-z0-9]*\n/, "")}</code></pre>`;
      return safe.split(/\n{2,}/).map((p) => `<p>${inline(p).replace(/\n/g, "<br>")}</p>`).join("");
    })
    .join("");
}
