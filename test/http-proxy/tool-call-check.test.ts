/**
 * Tool calls in model answers are decided by the PDP (a `tool` decision per call, with the
 * agent's token) before the agent sees them: refused calls are replaced by a refusal,
 * allowed ones pass unchanged — through the real `openai` SDK, streamed and not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { createHttpProxy } from '../../shims/http-proxy/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js';

let pdp: RunningPdp;
let upstream: FakeOpenAi;
let proxy: FastifyInstance;
let client: OpenAI;

const tools = ['get_weather', 'send-email', 'delete-repo'].map((name) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } }));
const ask = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'help' }], tools };
const WEATHER = JSON.stringify({ city: 'Paris' });

before(async () => {
  pdp = await startPdp();
  upstream = await startFakeOpenAi();
  proxy = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [{ prefix: '/openai', resource: 'openai', kind: 'llm', provider: 'openai', upstream: upstream.url }],
  });
  const listening = await proxy.listen({ host: '127.0.0.1', port: 0 });
  // get_weather is in scope; send-email is in scope but needs an approval; delete-repo is
  // in scope but disabled by the default policy; wipe_disk has no scope at all.
  const token = await pdp.mint('agent-tools', ['llm:openai:chat:gpt-4o-*', 'tool:get_weather:call', 'tool:send-email:call', 'tool:delete-repo:call']);
  client = new OpenAI({ apiKey: token, baseURL: `${listening}/openai/v1`, maxRetries: 0 });
});

after(async () => {
  await proxy?.close();
  await upstream?.close();
  await pdp?.close();
});

type Message = OpenAI.Chat.Completions.ChatCompletionMessage;
const calls = (m: Message | undefined) => (m?.tool_calls ?? []).map((tc) => (tc.type === 'function' ? [tc.function.name, tc.function.arguments] : [tc.type, '']));
const refusals = (m: Message | undefined) => (m?.refusal ?? '').split('\n').filter(Boolean);

function assertRefused(line: string | undefined, tool: string, code: string): void {
  assert.ok(line, `a refusal for ${tool}`);
  assert.ok(line.includes(`"${tool}"`), line);
  assert.ok(line.includes(`(${code};`), line);
  assert.match(line, /decision [0-9a-f-]{36}/);
}

test('an allowed tool call passes; refused ones are replaced by refusals (not streamed)', async () => {
  upstream.setReply({
    toolCalls: [
      { name: 'wipe_disk', arguments: '{"path":"/"}' },
      { name: 'get_weather', arguments: WEATHER },
      { name: 'delete-repo', arguments: '{"repo":"scopegate"}' },
    ],
  });
  const res = await client.chat.completions.create(ask);
  const choice = res.choices[0];
  assert.deepEqual(calls(choice?.message), [['get_weather', WEATHER]]);
  assert.equal(choice?.finish_reason, 'tool_calls', 'an allowed call remains, so the agent still runs it');
  const [wipe, del] = refusals(choice?.message);
  assertRefused(wipe, 'wipe_disk', 'denied');
  assertRefused(del, 'delete-repo', 'denied');
});

test('the same through a stream: fragments held, decided, released with dense indexes', async () => {
  upstream.setReply({
    toolCalls: [
      { name: 'wipe_disk', arguments: '{"path":"/"}' },
      { name: 'get_weather', arguments: WEATHER },
    ],
    chunkChars: 2,
  });
  const final = await client.chat.completions.stream(ask).finalChatCompletion();
  const choice = final.choices[0];
  assert.deepEqual(calls(choice?.message), [['get_weather', WEATHER]]);
  assert.equal(choice?.finish_reason, 'tool_calls');
  assertRefused(refusals(choice?.message)[0], 'wipe_disk', 'denied');
});

test('when every call is refused the answer finishes with stop; an approval-gated tool names its approval', async () => {
  upstream.setReply({ toolCalls: [{ name: 'send-email', arguments: '{"to":"ann@example.com"}' }] });
  const res = await client.chat.completions.create(ask);
  assert.deepEqual(calls(res.choices[0]?.message), []);
  assert.equal(res.choices[0]?.finish_reason, 'stop');
  const [line] = refusals(res.choices[0]?.message);
  assertRefused(line, 'send-email', 'approval_required');
  assert.match(line ?? '', /approval [0-9a-f-]{36}/);

  upstream.setReply({ toolCalls: [{ name: 'wipe_disk', arguments: '{}' }], chunkChars: 3 });
  const streamed = await client.chat.completions.stream(ask).finalChatCompletion();
  assert.deepEqual(calls(streamed.choices[0]?.message), []);
  assert.equal(streamed.choices[0]?.finish_reason, 'stop');
  assertRefused(refusals(streamed.choices[0]?.message)[0], 'wipe_disk', 'denied');
});

test('answers without tool calls stream through untouched', async () => {
  upstream.setReply({ content: 'No tools needed today.', chunkChars: 1 });
  let text = '';
  let chunks = 0;
  for await (const chunk of await client.chat.completions.create({ ...ask, stream: true })) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'No tools needed today.');
  assert.ok(chunks > 10, 'still streamed delta by delta');
});
