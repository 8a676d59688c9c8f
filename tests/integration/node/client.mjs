// The official OpenAI Node SDK against a running Switchyard stack.
//
// Run by tests/integration/test_clients.py as `node client.mjs` with
// SWITCHYARD_BASE_URL (the edge's /v1 URL), SWITCHYARD_API_KEY and
// SWITCHYARD_PROMPT set. Prints one JSON object with what the SDK returned;
// the Python test compares it with the fake provider's documented answers.
// Exits non-zero, with the error on stderr, if any call throws unexpectedly.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHYARD_BASE_URL,
  apiKey: process.env.SWITCHYARD_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const messages = [{ role: "user", content: process.env.SWITCHYARD_PROMPT }];

const completion = await client.chat.completions.create({ model: "mock-chat", messages });

const stream = await client.chat.completions.create({
  model: "mock-chat",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let chunks = 0;
let usage = null;
for await (const chunk of stream) {
  chunks += 1;
  streamed += chunk.choices[0]?.delta?.content ?? "";
  usage = chunk.usage ?? usage;
}

const models = [];
for await (const model of client.models.list()) {
  models.push(model.id);
}

let unknownModel = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (err) {
  if (!(err instanceof OpenAI.NotFoundError)) throw err;
  unknownModel = { status: err.status, code: err.code };
}

console.log(
  JSON.stringify({
    completion: {
      object: completion.object,
      content: completion.choices[0].message.content,
      usage: completion.usage,
    },
    stream: { content: streamed, chunks, usage },
    models,
    unknownModel,
  }),
);
