// The gateway's own refusals on /v1/messages as the official Anthropic Node SDK raises them.
//
// Run by tests/integration/test_anthropic_errors.py as `node anthropic_errors.mjs` with
// SWITCHYARD_ORIGIN (the edge's origin, no /v1) and SWITCHYARD_KEYS, a JSON object of
// case name -> API key. Makes one messages.create per case on mock-chat and prints one
// JSON object: case name -> {status, name, type, retryAfter} of the error the SDK threw
// (null if the call succeeded). Exits non-zero if something else than an APIError throws.
import Anthropic from "@anthropic-ai/sdk";

const keys = JSON.parse(process.env.SWITCHYARD_KEYS);
const result = {};
for (const [name, apiKey] of Object.entries(keys)) {
  const client = new Anthropic({
    baseURL: process.env.SWITCHYARD_ORIGIN,
    apiKey,
    maxRetries: 0,
    timeout: 30_000,
  });
  try {
    await client.messages.create({
      model: "mock-chat",
      max_tokens: 5,
      messages: [{ role: "user", content: "hi" }],
    });
    result[name] = null;
  } catch (err) {
    if (!(err instanceof Anthropic.APIError)) throw err;
    result[name] = {
      status: err.status,
      name: err.constructor.name,
      type: err.error?.error?.type,
      retryAfter: err.headers?.get?.("retry-after") ?? null,
    };
  }
}
console.log(JSON.stringify(result));
