// The official Anthropic Node SDK against a running Switchyard stack.
//
// Run by tests/integration/test_anthropic_messages.py as `node anthropic.mjs` with
// SWITCHYARD_ORIGIN (the edge's origin, no /v1), SWITCHYARD_API_KEY, SWITCHYARD_MODEL
// and SWITCHYARD_PROMPT set. Prints one JSON object with what the SDK returned; the
// Python test checks it. Exits non-zero, with the error on stderr, if a call that
// should succeed throws.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.SWITCHYARD_ORIGIN,
  apiKey: process.env.SWITCHYARD_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const model = process.env.SWITCHYARD_MODEL;
const messages = [{ role: "user", content: process.env.SWITCHYARD_PROMPT }];
const tool = {
  name: "get_weather",
  description: "Weather in a city",
  input_schema: { type: "object", properties: { city: { type: "string" } } },
};

const created = await client.messages.create({ model, max_tokens: 50, messages });

let streamed = "";
const stream = client.messages.stream({ model, max_tokens: 50, messages });
stream.on("text", (text) => {
  streamed += text;
});
const final = await stream.finalMessage();

const toolStream = client.messages.stream({
  model,
  max_tokens: 50,
  messages,
  tools: [tool],
  tool_choice: { type: "tool", name: "get_weather" },
});
const called = await toolStream.finalMessage();
const use = called.content.find((block) => block.type === "tool_use");
const answered = await client.messages.create({
  model,
  max_tokens: 50,
  tools: [tool],
  messages: [
    ...messages,
    { role: "assistant", content: called.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "Sunny" }] },
  ],
});

const counted = await client.messages.countTokens({ model, messages });

async function failure(call) {
  try {
    await call();
    return null;
  } catch (err) {
    if (err instanceof Anthropic.APIError) {
      return { status: err.status, name: err.constructor.name, type: err.error?.error?.type };
    }
    throw err;
  }
}
const wrongKey = new Anthropic({
  baseURL: process.env.SWITCHYARD_ORIGIN,
  apiKey: "sk-sy-wrong",
  maxRetries: 0,
});

console.log(
  JSON.stringify({
    created: { id: created.id, text: created.content[0].text, stop: created.stop_reason },
    stream: { text: streamed, final: final.content[0].text, usage: final.usage },
    tool: { name: use.name, input: use.input, stop: called.stop_reason },
    answered: answered.stop_reason,
    countTokens: counted.input_tokens,
    unknownModel: await failure(() =>
      client.messages.create({ model: "no-such-model", max_tokens: 5, messages }),
    ),
    wrongKey: await failure(() => wrongKey.messages.create({ model, max_tokens: 5, messages })),
  }),
);
