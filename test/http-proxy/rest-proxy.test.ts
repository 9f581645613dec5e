/**
 * The http-proxy in front of a plain REST upstream, deciding with the real PDP and the
 * default policy. Every refused request is also checked to have reached nothing upstream.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createHttpProxy } from '../../shims/http-proxy/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { startFakeRest, CONTACT, type FakeRest } from '../support/fake-rest.js';

let pdp: RunningPdp;
let rest: FakeRest;
let proxy: FastifyInstance;
let base: URL;
let token: string;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
}

/** node:http keeps the path byte-for-byte (fetch would resolve dot segments itself). */
function send(method: string, path: string, headers: Record<string, string | string[]> = {}, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const auth = () => ({ authorization: `Bearer ${token}` });

/** Asserts a refusal with a stable code that never reached the upstream. */
async function refused(p: Promise<Answer>, status: number, code: string): Promise<Answer> {
  const before = rest.seen.length;
  const res = await p;
  assert.equal(res.status, status, res.body);
  assert.equal(res.json?.code, code, res.body);
  assert.equal(rest.seen.length, before, 'upstream must see nothing');
  return res;
}

before(async () => {
  pdp = await startPdp();
  rest = await startFakeRest();
  token = await pdp.mint('agent-1', ['http:crm:GET:/v1/contacts/*', 'http:crm:GET:/v1/contacts', 'http:crm:POST:/v1/contacts', 'http:crm:DELETE:/v1/contacts/*', 'http:crm:GET:/v1/notes.txt', 'http:crm:GET:/v1/photo']);
  proxy = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [{ prefix: '/crm', resource: 'crm', kind: 'rest', upstream: rest.url, credential: { header: 'x-api-key', value: 'upstream-secret' } }],
    bodyLimitBytes: 64 * 1024,
  });
  base = new URL(await proxy.listen({ host: '127.0.0.1', port: 0 }));
});

after(async () => {
  await proxy?.close();
  await rest?.close();
  await pdp?.close();
});

test('an allowed request is forwarded with the upstream credential, not the token, and masked', async () => {
  const res = await send('GET', '/crm/v1/contacts/1', { ...auth(), 'x-scopegate-session': 's-1' });
  assert.equal(res.status, 200, res.body);
  assert.match(String(res.headers['x-scopegate-decision-id']), /^[0-9a-f-]{36}$/);
  assert.equal(res.json.email, '[REDACTED]');
  assert.equal(res.json.phone, '[REDACTED]');
  assert.equal(res.json.name, CONTACT.name);
  assert.equal(res.json.notes, 'Paid with ****1111, backup mail [REDACTED:email]');
  const seen = rest.seen.at(-1)!;
  assert.equal(seen.url, '/v1/contacts/1');
  assert.equal(seen.headers['x-api-key'], 'upstream-secret');
  assert.equal(seen.headers.authorization, undefined);
  assert.equal(seen.headers['x-scopegate-session'], undefined);
  assert.equal(seen.headers['accept-encoding'], 'identity');
});

test('array paths mask every element; the query is forwarded as sent', async () => {
  const res = await send('GET', '/crm/v1/contacts?limit=2', auth());
  assert.equal(res.status, 200, res.body);
  assert.deepEqual(res.json.contacts.map((c: { ssn: string; email: string }) => [c.ssn, c.email]), [
    ['[REDACTED]', '[REDACTED]'],
    ['[REDACTED]', '[REDACTED]'],
  ]);
  assert.equal(rest.seen.at(-1)!.url, '/v1/contacts?limit=2');
});

test('dot segments and encodings cannot slip past a /v1/contacts/* scope', async () => {
  await refused(send('GET', '/crm/v1/contacts/../admin/keys', auth()), 403, 'denied');
  await refused(send('GET', '/crm/v1/contacts/%2e%2e/admin/keys', auth()), 403, 'denied');
  await refused(send('GET', '/crm/v1/contacts/..%2Fadmin%2Fkeys', auth()), 400, 'path_ambiguous');
  await refused(send('GET', '/crm/v1/contacts/%252e%252e/admin/keys', auth()), 400, 'path_ambiguous');
  await refused(send('GET', '/crm/v1/contacts/1;/../../admin/keys', auth()), 400, 'path_ambiguous');
  await refused(send('GET', '/crm/v1/contacts\\..\\admin', auth()), 400, 'path_ambiguous');
  await refused(send('GET', '/crm/../../etc/passwd', auth()), 400, 'path_invalid');
  await refused(send('GET', '/crm//v1//admin/keys', auth()), 403, 'denied');
  await refused(send('GET', '/other/v1/contacts/1', auth()), 404, 'route_not_found');
});

test('a missing, malformed or foreign token is refused before the upstream', async () => {
  await refused(send('GET', '/crm/v1/contacts/1'), 401, 'token_missing');
  await refused(send('GET', '/crm/v1/contacts/1', { authorization: 'Basic dXNlcjpwYXNz' }), 400, 'header_invalid');
  await refused(send('GET', '/crm/v1/contacts/1', { authorization: 'Bearer not-a-jwt' }), 401, 'token_malformed');
  const foreign = await startPdp();
  try {
    const other = await foreign.mint('agent-1', ['http:crm:GET:/v1/contacts/*']);
    const res = await refused(send('GET', '/crm/v1/contacts/1', { authorization: `Bearer ${other}` }), 401, (await send('GET', '/crm/v1/contacts/1', { authorization: `Bearer ${other}` })).json.code);
    assert.match(res.json.code, /^token_/);
  } finally {
    await foreign.close();
  }
});

test('the agent cannot override the credential or smuggle headers', async () => {
  const res = await send('GET', '/crm/v1/contacts/1', {
    ...auth(),
    'x-api-key': 'agent-chosen',
    connection: 'keep-alive, x-keep-me-out',
    'x-keep-me-out': '1',
    'x-forwarded-for': '10.0.0.1',
    'proxy-authorization': 'Basic eA==',
  });
  assert.equal(res.status, 200);
  const seen = rest.seen.at(-1)!;
  assert.equal(seen.headers['x-api-key'], 'upstream-secret');
  assert.equal(seen.headers['x-keep-me-out'], undefined);
  assert.equal(seen.headers['x-forwarded-for'], undefined);
  assert.equal(seen.headers['proxy-authorization'], undefined);
  await refused(send('GET', '/crm/v1/contacts/1', { authorization: [`Bearer ${token}`, `Bearer ${token}`] }), 400, 'header_invalid');
});

test('raw header injection (CR/LF, obs-fold) never reaches the upstream', async () => {
  const before = rest.seen.length;
  for (const injected of [`X-A: 1\r\n Folded: yes`, `X-A: 1\nX-B: bare-lf`, `X-A: a\rb`]) {
    const answer = await new Promise<string>((resolve) => {
      const sock = net.connect(Number(base.port), base.hostname, () => {
        sock.write(`GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${injected}\r\n\r\n`);
      });
      let data = '';
      sock.on('data', (d) => (data += d.toString()));
      sock.on('close', () => resolve(data));
      sock.on('error', () => resolve(data));
      sock.setTimeout(2000, () => sock.destroy());
    });
    assert.match(answer, /^HTTP\/1\.1 400/, injected);
  }
  assert.equal(rest.seen.length, before);
});

test('bodies: malformed JSON and oversized bodies are refused with stable codes', async () => {
  const json = { ...auth(), 'content-type': 'application/json' };
  await refused(send('POST', '/crm/v1/contacts', json, '{"name": "x",'), 400, 'malformed_json');
  await refused(send('POST', '/crm/v1/contacts', json, JSON.stringify({ blob: 'x'.repeat(100 * 1024) })), 413, 'body_too_large');
  const ok = await send('POST', '/crm/v1/contacts', json, JSON.stringify({ name: 'Bob' }));
  assert.equal(ok.status, 201, ok.body);
  assert.equal(rest.seen.at(-1)!.body, '{"name":"Bob"}');
});

test('policy rules: a route needing approval answers 403 with the approval id (no hold configured)', async () => {
  const res = await refused(send('DELETE', '/crm/v1/contacts/1', auth()), 403, 'approval_required');
  assert.ok(res.json.decision_id);
});

test('text answers are masked; binary answers that would need masking are refused', async () => {
  const text = await send('GET', '/crm/v1/notes.txt', auth());
  assert.equal(text.status, 200);
  assert.equal(text.body, 'Call Ann at [REDACTED:email]');
  assert.match(String(text.headers['x-scopegate-decision-id']), /^[0-9a-f-]{36}$/, 'the upstream cannot forge the decision id');
  const bin = await send('GET', '/crm/v1/photo', auth());
  assert.equal(bin.status, 502);
  assert.equal(bin.json.code, 'response_unmaskable');
});

test('a PDP that cannot be reached means deny', async () => {
  const dead = createHttpProxy({
    pdp: { url: 'http://127.0.0.1:9', key: 'k', timeoutMs: 500 },
    routes: [{ prefix: '/crm', resource: 'crm', kind: 'rest', upstream: rest.url }],
  });
  try {
    const before = rest.seen.length;
    const res = await dead.inject({ method: 'GET', url: '/crm/v1/contacts/1', headers: auth() });
    assert.equal(res.statusCode, 503);
    assert.equal(res.json().code, 'pdp_unavailable');
    assert.equal(rest.seen.length, before);
  } finally {
    await dead.close();
  }
});
