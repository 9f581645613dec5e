import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, checkQuery, splitTarget } from '../../shims/http-proxy/src/path-normalize.js';
import { ProxyError } from '../../shims/http-proxy/src/errors.js';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof ProxyError, String(err));
    return err.code;
  }
};

test('dot segments, duplicate slashes and unreserved escapes resolve to what the upstream sees', () => {
  const cases: Array<[string, string]> = [
    ['/v1/contacts/1', '/v1/contacts/1'],
    ['/v1/contacts/../admin', '/v1/admin'],
    ['/v1/contacts/./1', '/v1/contacts/1'],
    ['/v1//contacts///1', '/v1/contacts/1'],
    ['/v1/contacts/%2e%2e/admin', '/v1/admin'],
    ['/v1/contacts/.%2E/admin', '/v1/admin'],
    ['/v1/%63ontacts/%7e1', '/v1/contacts/~1'],
    ['/v1/contacts/..', '/v1/'],
    ['/v1/a%20b/%c3%a9', '/v1/a%20b/%C3%A9'],
    ['/v1/x:y@z', '/v1/x:y@z'],
    ['/', '/'],
  ];
  for (const [raw, want] of cases) assert.equal(normalizePath(raw), want, raw);
});

test('case folding only for routes that declare a case-insensitive upstream', () => {
  assert.equal(normalizePath('/V1/Contacts/%c3%a9'), '/V1/Contacts/%C3%A9');
  assert.equal(normalizePath('/V1/Contacts/%c3%a9', { caseInsensitive: true }), '/v1/contacts/%C3%A9');
});

test('ambiguous encodings are rejected rather than guessed', () => {
  const cases: Array<[string, string]> = [
    ['/v1/contacts%2F..%2Fadmin', 'path_ambiguous'],
    ['/v1/contacts%2fadmin', 'path_ambiguous'],
    ['/v1/contacts%5c..%5cadmin', 'path_ambiguous'],
    ['/v1/contacts\\..\\admin', 'path_ambiguous'],
    ['/v1/%252e%252e/admin', 'path_ambiguous'],
    ['/v1/admin;jsessionid=1', 'path_ambiguous'],
    ['/v1/a%00b', 'path_ambiguous'],
    ['/v1/%c3%28', 'path_ambiguous'],
    ['/v1/%zz', 'path_invalid'],
    ['/v1/%4', 'path_invalid'],
    ['/../etc/passwd', 'path_invalid'],
    ['/v1/../../etc', 'path_invalid'],
    ['/v1/a b', 'path_invalid'],
    ['/v1/é', 'path_invalid'],
    ['v1/contacts', 'path_invalid'],
  ];
  for (const [raw, want] of cases) assert.equal(code(() => normalizePath(raw)), want, raw);
});

test('request targets and query strings', () => {
  assert.deepEqual(splitTarget('/a?b=1&c'), { path: '/a', query: 'b=1&c' });
  assert.deepEqual(splitTarget('/a'), { path: '/a', query: undefined });
  assert.equal(code(() => splitTarget('http://evil.example/a')), 'path_invalid');
  assert.equal(code(() => checkQuery('a=%zz')), 'query_invalid');
  assert.equal(code(() => checkQuery('a=<script>')), 'query_invalid');
  assert.equal(code(() => checkQuery('a=1&b=%20x')), 'ok');
});
