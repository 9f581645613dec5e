import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileMask, maskChatCompletion, maskChatRequest, maskJson } from '../../shims/masking/src/index.js';

const doc = {
  contacts: [
    { name: 'Ann', email: 'ann@example.com', card: { number: '4111111111111111', cvc: '123' }, notes: 'call +1 415 555 0132' },
    { name: 'Bob', Email: 'bob@example.com', card: null, notes: 'ok' },
  ],
  meta: { owner: { email: 'owner@example.com' } },
};

test('field names are matched at any depth, case-insensitively', () => {
  const out = maskJson(doc, compileMask([{ target: 'email', method: 'redact' }])) as typeof doc;
  assert.equal(out.contacts[0]?.email, '[REDACTED]');
  assert.equal((out.contacts[1] as Record<string, unknown>).Email, '[REDACTED]');
  assert.equal(out.meta.owner.email, '[REDACTED]');
  assert.equal(doc.contacts[0]?.email, 'ann@example.com', 'input untouched');
});

test('JSON paths: index, wildcard, recursive descent, whole subtrees', () => {
  const out = maskJson(
    doc,
    compileMask([
      { target: '$.contacts[*].card', method: 'null' },
      { target: '$.contacts[0].name', method: 'last4' },
      { target: '$..owner', method: 'redact' },
    ]),
  ) as Record<string, any>;
  assert.equal(out.contacts[0].card, null);
  assert.equal(out.contacts[1].card, null);
  assert.equal(out.contacts[0].name, '****');
  assert.equal(out.contacts[1].name, 'Bob');
  assert.equal(out.meta.owner, '[REDACTED]');
  assert.equal(out.contacts[0].email, 'ann@example.com');
});

test('detectors apply to every string and to numbers that are card numbers', () => {
  const out = maskJson({ a: ['x 4111 1111 1111 1111'], n: 4111111111111111, m: 42 }, compileMask([{ detector: 'credit_card', method: 'last4' }])) as any;
  assert.deepEqual(out, { a: ['x ****1111'], n: '****1111', m: 42 });
});

test('a detector scoped to a target masks only inside it', () => {
  const out = maskJson(doc, compileMask([{ target: 'notes', detector: 'phone', method: 'redact' }])) as any;
  assert.equal(out.contacts[0].notes, 'call [REDACTED:phone]');
  assert.equal(out.contacts[0].email, 'ann@example.com');
});

test('__proto__ keys stay data and do not pollute', () => {
  const parsed = JSON.parse('{"__proto__": {"polluted": "yes a@b.io"}, "x": 1}');
  const out = maskJson(parsed, compileMask([{ detector: 'email', method: 'redact' }])) as any;
  assert.equal(({} as any).polluted, undefined);
  assert.equal(Object.getOwnPropertyDescriptor(out, '__proto__')?.value.polluted, 'yes [REDACTED:email]');
});

test('SQL-style column targets match by their last segment', () => {
  const out = maskJson({ ssn: '078-05-1120' }, compileMask([{ target: 'public.users.ssn', method: 'redact' }]));
  assert.deepEqual(out, { ssn: '[REDACTED]' });
});

test('tool-call arguments in a completion are parsed and masked by field and detector', () => {
  const completion = {
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'pay', arguments: '{"card_number":"4111111111111111","memo":"to ann@example.com"}' } }],
        },
      },
    ],
  };
  const out = maskChatCompletion(completion, compileMask([{ target: 'card_number', method: 'last4' }, { detector: 'email', method: 'redact' }])) as any;
  assert.deepEqual(JSON.parse(out.choices[0].message.tool_calls[0].function.arguments), { card_number: '****1111', memo: 'to [REDACTED:email]' });
});

test('prompt masking covers message text, parts, tool arguments and embeddings input, not parameters', () => {
  const mask = compileMask([{ detector: 'email', method: 'redact' }, { detector: 'secret', method: 'redact' }]);
  const chat = maskChatRequest(
    {
      model: 'gpt-x@example.com',
      messages: [
        { role: 'user', content: 'I am ann@example.com' },
        { role: 'user', content: [{ type: 'text', text: 'key AKIAIOSFODNN7EXAMPLE' }] },
        { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{"to":"bob@example.com"}' } }] },
      ],
    },
    mask,
  ) as any;
  assert.equal(chat.model, 'gpt-x@example.com');
  assert.equal(chat.messages[0].content, 'I am [REDACTED:email]');
  assert.equal(chat.messages[1].content[0].text, 'key [REDACTED:secret]');
  assert.deepEqual(JSON.parse(chat.messages[2].tool_calls[0].function.arguments), { to: '[REDACTED:email]' });
  assert.deepEqual(maskChatRequest({ model: 'e', input: ['a@b.io', 'x'] }, mask), { model: 'e', input: ['[REDACTED:email]', 'x'] });
});
