import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileMask, findMatches, ibanValid, luhnValid, maskText, DETECTORS } from '../../shims/masking/src/index.js';

const everything = compileMask(
  ['email', 'phone', 'credit_card', 'us_ssn', 'iban', 'ip_address', 'secret'].map((detector) => ({ detector, method: 'redact' })),
);
const kinds = (text: string) => findMatches(text, DETECTORS).map((m) => m.kind);

test('Luhn separates real card numbers from look-alikes', () => {
  assert.equal(luhnValid('4111 1111 1111 1111'), true);
  assert.equal(luhnValid('5500-0000-0000-0004'), true);
  assert.equal(luhnValid('4111111111111112'), false);
  assert.equal(luhnValid('1234'), false);
  assert.equal(maskText('pay with 4111-1111-1111-1111 today', everything), 'pay with [REDACTED:credit_card] today');
  assert.equal(maskText('order 4111111111111112', everything), 'order 4111111111111112');
});

test('IBAN mod-97 check', () => {
  assert.equal(ibanValid('GB82 WEST 1234 5698 7654 32'), true);
  assert.equal(ibanValid('DE89370400440532013000'), true);
  assert.equal(ibanValid('GB82WEST12345698765433'), false);
  assert.deepEqual(kinds('to DE89 3704 0044 0532 0130 00 please'), ['iban']);
  assert.deepEqual(kinds('ref GB82WEST12345698765433'), []);
});

test('each detector finds its kind of value', () => {
  const cases: Array<[string, string]> = [
    ['write to jane.roe+x@mail.example.org', 'email'],
    ['ring +44 20 7946 0958', 'phone'],
    ['ssn 078-05-1120', 'us_ssn'],
    ['from 192.168.10.20', 'ipv4'],
    ['from 2001:db8::8a2e:370:7334', 'ipv6'],
    ['AKIAIOSFODNN7EXAMPLE', 'aws_access_key'],
    ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'aws_secret_key'],
    ['sk-proj-' + 'Ab3'.repeat(16), 'openai_key'],
    ['ghp_' + 'Z9'.repeat(18), 'github_token'],
    ['github_pat_' + 'a1'.repeat(20), 'github_token'],
    ['xoxb-1234567890-abcdefghijkl', 'slack_token'],
    ['eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl', 'jwt'],
    ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----', 'private_key'],
  ];
  for (const [text, kind] of cases) assert.deepEqual(kinds(text), [kind], text);
});

test('ordinary text is left alone', () => {
  const text = 'Order 12345 shipped on 2024-01-15 at 12:30:45, total 1234.56 EUR (ref ABCD).';
  assert.equal(maskText(text, everything), text);
});

test('mask methods: last4, hash (stable, keyed), null', () => {
  const key = Buffer.alloc(32, 7);
  const m = compileMask(
    [
      { detector: 'credit_card', method: 'last4' },
      { detector: 'email', method: 'hash' },
      { detector: 'us_ssn', method: 'null' },
    ],
    { hashKey: key },
  );
  const out = maskText('card 4111 1111 1111 1111, a@b.io, a@b.io, ssn 078-05-1120.', m);
  const hashes = out.match(/\[HASH:[0-9a-f]{16}\]/g) ?? [];
  assert.equal(hashes.length, 2);
  assert.equal(hashes[0], hashes[1]);
  assert.match(out, /^card \*\*\*\*1111, \[HASH:[0-9a-f]{16}\], \[HASH:[0-9a-f]{16}\], ssn \.$/);
  const other = compileMask([{ detector: 'email', method: 'hash' }], { hashKey: Buffer.alloc(32, 8) });
  assert.notEqual(maskText('a@b.io', other), hashes[0]);
});

test('an unknown method or detector masks more, not less', () => {
  const m = compileMask([{ detector: 'no-such-detector', method: 'scramble' }]);
  assert.equal(maskText('mail a@b.io key AKIAIOSFODNN7EXAMPLE', m), 'mail [REDACTED:email] key [REDACTED:secret]');
});
