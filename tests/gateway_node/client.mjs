// The official openai npm package against a torq-fallback gateway: a chat, a stream and a
// tool call. Prints one JSON line of what it saw; any error fails the process.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2] + "/v1", apiKey: "unused", maxRetries: 0 });

const { data: chat, response } = await client.chat.completions
  .create({ model: "direct", messages: [{ role: "user", content: "RATE: what is 2+2?" }] })
  .withResponse();

let streamed = "";
let last = null;
const stream = await client.chat.completions.create({
  model: "direct",
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "LONG story" }],
});
for await (const chunk of stream) {
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  last = chunk;
}

const tools = [{
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
}];
const called = await client.chat.completions.create({
  model: "direct", tools, messages: [{ role: "user", content: "TOOL: weather in Paris?" }],
});

console.log(JSON.stringify({
  text: chat.choices[0].message.content,
  provider: response.headers.get("x-torq-provider"),
  reason: response.headers.get("x-torq-fallback-reason"),
  attempts: chat.torq.provider_attempts.map((a) => a.status),
  streamed,
  usage: last.usage,
  lastTorq: last.torq.chain,
  tool: called.choices[0].message.tool_calls[0].function,
}));
