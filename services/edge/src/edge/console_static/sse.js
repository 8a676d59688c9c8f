// Server-sent events of a fetch() response, as the edge sends them: one JSON object per
// `data: ` line (`data: [DONE]` ends OpenAI's streams and is skipped). Shared by the
// console's playground and the widget (served inside /channel/v1/widget.js).
export async function* sseData(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (line.startsWith("data: ") && line !== "data: [DONE]") yield JSON.parse(line.slice(6));
    }
  }
}
