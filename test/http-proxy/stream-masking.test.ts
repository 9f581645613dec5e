/**
 * Masking of model answers through the proxy: SSE streams masked incrementally (secrets
 * split across deltas), tool-call arguments masked, non-streamed answers masked. The mask
 * comes from the default policy's `crm` resource, reached as a REST route that fronts the
 * OpenAI-compatible fake, so the obligations are the real PDP's.
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

before(async () => {
  pdp = await startPdp();
  upstream = await startFakeOpenAi();
  proxy = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [{ prefix: '/crm-assistant', resource: 'crm', kind: 'rest', upstream: upstream.url }],
  });
  const listening = await proxy.listen({ host: '127.0.0.1', port: 0 });
  const token = await pdp.mint('agent-stream', ['http:crm:POST:/v1/chat/completions']);
  client = new OpenAI({ apiKey: token, baseURL: `${listening}/crm-assistant/v1`, maxRetries: 0 });
});

after(async () => {
  await proxy?.close();
  await upstream?.close();
  await pdp?.close();
});

const ANSWER = 'Ann’s address is ann@example.com — card 4111 1111 1111 1111 ✓ ok';
const MASKED = 'Ann’s address is [REDACTED:email] — card ****1111 ✓ ok';

test('a streamed answer is masked even when every delta carries 1 character', async () => {
  upstream.setReply({ content: ANSWER, chunkChars: 1 });
  const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'who?' }], stream: true });
  let text = '';
  let first: string | undefined;
  for await (const chunk of stream) {
    first ??= chunk.choices[0]?.delta?.role;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(first, 'assistant', 'the first chunk is passed on unchanged');
  assert.equal(text, MASKED);
});

test('a non-streamed answer is masked', async () => {
  upstream.setReply({ content: ANSWER });
  const res = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'who?' }] });
  assert.equal(res.choices[0]?.message.content, MASKED);
});

test('tool-call arguments in answers are masked, streamed and not', async () => {
  const args = JSON.stringify({ email: 'ann@example.com', note: 'card 4111111111111111' });
  const want = { email: '[REDACTED]', note: 'card ****1111' };
  upstream.setReply({ toolCalls: [{ name: 'send', arguments: args }], chunkChars: 2 });
  const tools = [{ type: 'function' as const, function: { name: 'send', parameters: { type: 'object' } } }];
  const res = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools });
  const call = res.choices[0]?.message.tool_calls?.[0];
  assert.deepEqual(JSON.parse(call?.type === 'function' ? call.function.arguments : '{}'), want);
  const final = await client.chat.completions.stream({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools }).finalChatCompletion();
  const streamed = final.choices[0]?.message.tool_calls?.[0];
  assert.equal(streamed?.type === 'function' ? streamed.function.name : '', 'send');
  assert.deepEqual(JSON.parse(streamed?.type === 'function' ? streamed.function.arguments : '{}'), want);
});
