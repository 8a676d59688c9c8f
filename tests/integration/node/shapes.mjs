// Every answer shape of /v1 through the official OpenAI Node SDK's own helpers.
//
// Run by tests/integration/test_sdk_shapes.py as `node shapes.mjs` with
// SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY set. The SDK's stream helpers
// (ChatCompletionStream, ResponseStream) assemble the final objects from the
// events and throw on a sequence OpenAI would not send; the plain loops read
// `chunk.choices[0]` as ordinary client code does. Prints one JSON object;
// exits non-zero, with the error on stderr, if anything throws unexpectedly.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHYARD_BASE_URL,
  apiKey: process.env.SWITCHYARD_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const messages = [{ role: "user", content: "weather in Paris" }];
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      parameters: { type: "object", properties: { city: { type: "string" } } },
    },
  },
];

// Plain loops that index choices[0] on every chunk, with and without tools.
async function plainStream(extra) {
  const stream = await client.chat.completions.create({
    model: "mock-chat",
    messages,
    stream: true,
    ...extra,
  });
  let text = "";
  let toolArgs = "";
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    const delta = chunk.choices[0].delta;
    text += delta.content ?? "";
    for (const call of delta.tool_calls ?? []) toolArgs += call.function?.arguments ?? "";
  }
  return { text, toolArgs, chunks };
}

// The SDK's accumulating helper, with include_usage.
async function helperStream() {
  const stream = client.chat.completions.stream({
    model: "mock-chat",
    messages,
    tools,
    tool_choice: "required",
    stream_options: { include_usage: true },
  });
  const final = await stream.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  return {
    finish: final.choices[0].finish_reason,
    tool: call.function.name,
    args: JSON.parse(call.function.arguments),
    usage: final.usage,
  };
}

async function responses() {
  const created = await client.responses.create({ model: "mock-reasoning", input: "hi" });
  const stream = client.responses.stream({ model: "mock-reasoning", input: "hi" });
  const types = [];
  stream.on("event", (event) => types.push(event.type));
  const final = await stream.finalResponse();
  const again = await client.responses.retrieve(created.id);
  return {
    text: created.output_text,
    streamed: final.output
      .flatMap((item) => item.content ?? [])
      .map((part) => part.text ?? "")
      .join(""),
    status: final.status,
    first: types[0],
    last: types[types.length - 1],
    retrieved: again.id === created.id,
  };
}

async function errorOf(call) {
  try {
    await call();
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) throw err;
    return { status: err.status, type: err.type, code: err.code, param: err.param };
  }
  return null;
}

const embedding = await client.embeddings.create({ model: "mock-embed", input: ["a", "b"] });
const model = await client.models.retrieve("mock-chat");

console.log(
  JSON.stringify({
    plain: await plainStream({}),
    tools: await plainStream({ tools, tool_choice: "required" }),
    helper: await helperStream(),
    responses: await responses(),
    embeddings: { count: embedding.data.length, dims: embedding.data[0].embedding.length },
    model: { id: model.id, object: model.object },
    errors: {
      badRequest: await errorOf(() => client.chat.completions.create({ model: "mock-chat" })),
      notFound: await errorOf(() => client.models.retrieve("no-such-model")),
      auth: await errorOf(() =>
        new OpenAI({
          baseURL: process.env.SWITCHYARD_BASE_URL,
          apiKey: "sk-sy-wrong",
          maxRetries: 0,
        }).models.list(),
      ),
    },
  }),
);
