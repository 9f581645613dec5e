import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileMask, SseMasker, SseMaskError, StreamingTextMasker } from '../../shims/masking/src/index.js';

const mask = compileMask([
  { detector: 'email', method: 'redact' },
  { detector: 'secret', method: 'redact' },
  { detector: 'credit_card', method: 'last4' },
  { target: 'card_number', method: 'last4' },
]);

function chunk(content: string | undefined, extra: Record<string, unknown> = {}, finish: string | null = null) {
  const delta: Record<string, unknown> = { ...extra };
  if (content !== undefined) delta.content = content;
  return `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}

/** Parse a masked SSE byte stream back into the text and tool arguments a client would assemble. */
function assemble(sse: string) {
  let text = '';
  const args = new Map<number, string>();
  let done = false;
  for (const event of sse.split('\n\n')) {
    if (!event.startsWith('data: ')) continue;
    const data = event.slice(6);
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    for (const c of JSON.parse(data).choices) {
      if (typeof c.delta?.content === 'string') text += c.delta.content;
      for (const tc of c.delta?.tool_calls ?? []) args.set(tc.index, (args.get(tc.index) ?? '') + (tc.function?.arguments ?? ''));
    }
  }
  return { text, args, done };
}

/** Feed a byte stream in pieces of `size` bytes (splitting UTF-8 characters and events anywhere). */
function run(input: string, size: number, m = new SseMasker(mask)) {
  const bytes = Buffer.from(input, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i += size) out += m.write(bytes.subarray(i, i + size));
  return out + m.end();
}

const secretText = 'Contact ann@example.com, key sk-proj-' + 'Qw9'.repeat(15) + ' ☃😀 ü, card 4111 1111 1111 1111. Done.';

test('a secret split across many token deltas and a UTF-8 character split across byte chunks are masked', () => {
  const pieces = secretText.match(/.{1,3}/gsu) ?? [];
  const input = chunk('', { role: 'assistant' }) + pieces.map((p) => chunk(p)).join('') + chunk(undefined, {}, 'stop') + 'data: [DONE]\n\n';
  for (const size of [1, 2, 7, 64, 4096]) {
    const got = assemble(run(input, size));
    assert.equal(got.text, 'Contact [REDACTED:email], key [REDACTED:secret] ☃😀 ü, card ****1111. Done.', `byte chunk ${size}`);
    assert.equal(got.done, true);
  }
});

test('events are released as they arrive: the first chunk is not held, and hold-back stays bounded', () => {
  const m = new SseMasker(mask, { holdChars: 32 });
  const first = m.write(Buffer.from(chunk('', { role: 'assistant' })));
  assert.match(first, /"role":"assistant"/);
  let released = '';
  const words = Array.from({ length: 200 }, (_, i) => `word${i} `);
  for (const w of words) released += assemble(m.write(Buffer.from(chunk(w)))).text;
  const total = words.join('');
  assert.ok(total.length - released.length <= 32, `held ${total.length - released.length} chars`);
  assert.ok(total.startsWith(released));
  released += assemble(m.write(Buffer.from('data: [DONE]\n\n'))).text;
  assert.equal(released, total);
});

test('streamed tool-call arguments are held until the choice finishes, then masked as JSON', () => {
  const args = '{"card_number":"4111111111111111","note":"to ann@example.com"}';
  const first = { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'pay', arguments: '' } }] };
  const frags = args.match(/.{1,5}/gs) ?? [];
  const input =
    chunk(undefined, { role: 'assistant', ...first }) +
    frags.map((f) => chunk(undefined, { tool_calls: [{ index: 0, function: { arguments: f } }] })).join('') +
    chunk(undefined, {}, 'tool_calls') +
    'data: [DONE]\n\n';
  const out = run(input, 11);
  assert.ok(!out.includes('4111111111111111') && !out.includes('ann@example'));
  assert.match(out, /"name":"pay"/);
  assert.deepEqual(JSON.parse(assemble(out).args.get(0) ?? ''), { card_number: '****1111', note: 'to [REDACTED:email]' });
});

test('text held at stream end without [DONE] is still released, masked', () => {
  const out = run(chunk('my mail is bob@') + chunk('example.com'), 5);
  assert.equal(assemble(out).text, 'my mail is [REDACTED:email]');
});

test('non-chat SSE data is masked per event; comments dropped; other fields kept', () => {
  const out = run('event: note\nid: 7\ndata: reach me at ann@example.com\n\n: keepalive\n\ndata: {"email_hint":"bob@example.com"}\n\n', 3);
  assert.equal(out, 'event: note\nid: 7\ndata: reach me at [REDACTED:email]\n\ndata: {"email_hint":"[REDACTED:email]"}\n\n');
});

test('an unterminated private key is redacted to the end; a bounded hold never leaks it', () => {
  const t = new StreamingTextMasker(mask, { holdChars: 16, maxHoldChars: 64 });
  let out = t.push('intro -----BEGIN PRIVATE KEY-----\n');
  for (let i = 0; i < 20; i++) out += t.push('QUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n');
  out += t.push("-----END PRIVATE KEY----- after");
  assert.ok(t.held <= 64 + 33);
  out += t.flush();
  assert.ok(out.startsWith('intro '));
  assert.ok(!out.includes('QUJDREVG'), out);
  assert.ok(out.endsWith(' after'), out);
});

test('an event larger than the bound aborts with a stable code', () => {
  const m = new SseMasker(mask, { maxEventChars: 100 });
  assert.throws(() => m.write(Buffer.from('data: ' + 'x'.repeat(200))), (e: unknown) => e instanceof SseMaskError && e.code === 'sse_event_too_large');
});
