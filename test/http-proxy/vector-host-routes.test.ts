/**
 * Host-based routes and `vector` routes: a vector store reached by its own host name, its
 * search answers masked by the default policy's `vectors` resource, with the real PDP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { FastifyInstance } from 'fastify';
import { createHttpProxy } from '../../shims/http-proxy/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { startFakeRest, type FakeRest } from '../support/fake-rest.js';
import { startFakeVectorStore, HITS, type FakeVectorStore } from './fake-vector-store.js';

const VECTOR_KEY = 'qdrant-upstream-key';
let pdp: RunningPdp;
let vectors: FakeVectorStore;
let rest: FakeRest;
let proxy: FastifyInstance;
let port: number;
let token: string;

interface Answer {
  status: number;
  body: string;
  json: any;
}

/** node:http so the Host header is exactly the one given. */
function send(host: string, method: string, path: string, body?: unknown, bearer = token): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { host, authorization: `Bearer ${bearer}` };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
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
        resolve({ status: res.statusCode ?? 0, body: text, json });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

before(async () => {
  pdp = await startPdp();
  vectors = await startFakeVectorStore(VECTOR_KEY);
  rest = await startFakeRest();
  proxy = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [
      // A host route wins over a prefix route for the same path.
      { host: 'Vectors.Local', resource: 'vectors', kind: 'vector', upstream: vectors.url, credential: { header: 'api-key', value: VECTOR_KEY } },
      { prefix: '/', resource: 'crm', kind: 'rest', upstream: rest.url },
    ],
  });
  port = Number(new URL(await proxy.listen({ host: '127.0.0.1', port: 0 })).port);
  token = await pdp.mint('agent-rag', ['http:vectors:POST:/collections/*/points/search', 'http:vectors:DELETE:/collections/*', 'http:crm:GET:/v1/contacts/*']);
});

after(async () => {
  await proxy?.close();
  await vectors?.close();
  await rest?.close();
  await pdp?.close();
});

test('a vector search reached by host name: credential injected, payload PII masked', async () => {
  const res = await send(`vectors.local:${port}`, 'POST', '/collections/tickets/points/search', { vector: [0.1, 0.2, 0.3], limit: 2, with_payload: true });
  assert.equal(res.status, 200, res.body);
  assert.deepEqual(
    res.json.result.map((h: { id: number; score: number }) => [h.id, h.score]),
    HITS.map((h) => [h.id, h.score]),
    'ids and scores are untouched',
  );
  const [first, second] = res.json.result;
  assert.equal(first.payload.text, 'Ticket from [REDACTED:email] about a refund');
  assert.equal(first.payload.customer.email, '[REDACTED:email]');
  assert.equal(first.payload.customer.ssn, '[REDACTED]');
  assert.equal(second.payload.text, 'Call back [REDACTED:email]');
  const seen = vectors.seen.at(-1)!;
  assert.equal(seen.url, '/collections/tickets/points/search');
  assert.equal(seen.headers['api-key'], VECTOR_KEY);
  assert.equal(seen.headers.authorization, undefined, 'the agent token never reaches the store');
  assert.notEqual(seen.headers.host, `vectors.local:${port}`, 'the upstream sees its own host');
  assert.deepEqual(JSON.parse(seen.body), { vector: [0.1, 0.2, 0.3], limit: 2, with_payload: true });
});

test('the host decides the route; scopes and policy rules apply per resource', async () => {
  const vBefore = vectors.seen.length;
  const rBefore = rest.seen.length;
  // Same path, other host: the prefix route (crm), where this token has no POST scope.
  const other = await send(`api.local:${port}`, 'POST', '/collections/tickets/points/search', { limit: 1 });
  assert.equal(other.status, 403, other.body);
  assert.equal(other.json.code, 'denied');
  // Other collection operations on the vector store are outside the token's scopes.
  const upsert = await send(`vectors.local:${port}`, 'PUT', '/collections/tickets/points', { points: [] });
  assert.equal(upsert.json.code, 'denied');
  // The default policy denies dropping a collection even with a scope for it.
  const drop = await send(`vectors.local:${port}`, 'DELETE', '/collections/tickets');
  assert.equal(drop.status, 403, drop.body);
  assert.equal(drop.json.code, 'denied');
  assert.equal(vectors.seen.length, vBefore);
  assert.equal(rest.seen.length, rBefore);
  // The prefix route still serves other hosts.
  const contact = await send(`api.local:${port}`, 'GET', '/v1/contacts/1');
  assert.equal(contact.status, 200, contact.body);
  assert.equal(rest.seen.length, rBefore + 1);
});

test('the decision sees the normalised path on the host route too', async () => {
  const before = vectors.seen.length;
  const sneaky = await send(`vectors.local:${port}`, 'POST', '/collections/tickets/points/search/../../../../admin', {});
  assert.equal(sneaky.status, 403, sneaky.body);
  const encoded = await send(`vectors.local:${port}`, 'POST', '/collections/tickets%2Fpoints/search', {});
  assert.equal(encoded.json.code, 'path_ambiguous');
  assert.equal(vectors.seen.length, before);
});
