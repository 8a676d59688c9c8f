// Streamed /v1/messages calls that fail, as the official Anthropic Node SDK raises them.
//
// Anthropic's streaming docs: an error before the stream starts is an ordinary HTTP error
// (status and {"type": "error", "error": {type, message}}), which the SDK throws as its
// typed APIError subclass; an error after the 200 is an `error` event in the stream,
// which the SDK throws as a plain APIError without a status.
//
// Run by tests/integration/test_anthropic_errors.py as `node anthropic_stream_errors.mjs`
// with SWITCHYARD_ORIGIN (the edge's origin, no /v1) and SWITCHYARD_CASES, a JSON object of
// case name -> {apiKey, model, prompt}. Each case is streamed twice: `messages.create` with
// `stream: true`, iterated, and `messages.stream` awaited with `finalMessage()`. Prints one
// JSON object: case name -> {create, helper}, each {status, name, bodyType, type,
// hasMessage, retryAfter, events, text} of the error the SDK threw (events: the event
// types that arrived before it; text: the text the helper had streamed), or null if the
// stream ended without one. Exits non-zero if something other than an APIError throws.
import Anthropic from "@anthropic-ai/sdk";

const cases = JSON.parse(process.env.SWITCHYARD_CASES);

function describe(err, events, text) {
  if (!(err instanceof Anthropic.APIError)) throw err;
  return {
    status: err.status ?? null,
    name: err.constructor.name,
    bodyType: err.error?.type ?? null,
    type: err.error?.error?.type ?? null,
    hasMessage: typeof err.error?.error?.message === "string" && err.error.error.message !== "",
    retryAfter: err.headers?.get?.("retry-after") ?? null,
    events,
    text,
  };
}

async function viaCreate(client, params) {
  const events = [];
  try {
    const stream = await client.messages.create({ ...params, stream: true });
    for await (const event of stream) events.push(event.type);
    return null;
  } catch (err) {
    return describe(err, events, null);
  }
}

async function viaHelper(client, params) {
  const events = [];
  let text = "";
  const stream = client.messages.stream(params);
  stream.on("streamEvent", (event) => events.push(event.type));
  stream.on("text", (delta) => {
    text += delta;
  });
  try {
    await stream.finalMessage();
    return null;
  } catch (err) {
    return describe(err, events, text);
  }
}

const result = {};
for (const [name, { apiKey, model, prompt }] of Object.entries(cases)) {
  const client = new Anthropic({
    baseURL: process.env.SWITCHYARD_ORIGIN,
    apiKey,
    maxRetries: 0,
    timeout: 30_000,
  });
  const params = { model, max_tokens: 50, messages: [{ role: "user", content: prompt }] };
  result[name] = { create: await viaCreate(client, params), helper: await viaHelper(client, params) };
}
console.log(JSON.stringify(result));
