/** Health, readiness, metrics, OpenAPI, JWKS and token minting. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { startPdp, type RunningPdp } from '../support/pdp.js';

describe('service endpoints', () => {
  let pdp: RunningPdp;
  before(async () => {
    pdp = await startPdp({ listen: false });
  });
  after(() => pdp.close());
  const get = (url: string, key?: string) =>
    pdp.app.inject({ method: 'GET', url, ...(key ? { headers: { authorization: `Bearer ${key}` } } : {}) });

  it('healthz and readyz', async () => {
    assert.equal((await get('/healthz')).json().status, 'ok');
    const ready = await get('/readyz');
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().policy_revision, pdp.app.policy.active!.revision);
  });

  it('metrics count decisions by effect, latency and cache results', async () => {
    const token = await pdp.mint('m', ['tool:web-search:call']);
    await pdp.app.inject({
      method: 'POST',
      url: '/v1/decide',
      headers: { authorization: `Bearer ${pdp.shimKey}` },
      payload: { token, resource: { kind: 'tool', name: 'web-search' }, request: { tool: { name: 'web-search' } } },
    });
    const text = (await get('/metrics')).body;
    assert.match(text, /scopegate_decisions_total\{effect="allow",code=""\} 1/);
    assert.match(text, /scopegate_decision_duration_seconds_bucket/);
    assert.match(text, /scopegate_decision_cache_total\{result="(hit|miss)"\}/);
    assert.match(text, /scopegate_policy_info\{revision="[^"]+"/);
  });

  it('publishes an OpenAPI document generated from the route schemas', async () => {
    const doc = (await get('/openapi.json')).json();
    assert.equal(doc.openapi, '3.0.3');
    for (const p of ['/v1/decide', '/v1/decide/batch', '/v1/tokens', '/v1/policies', '/healthz']) assert.ok(doc.paths[p], p);
    const decide = doc.paths['/v1/decide'].post;
    assert.ok(decide.requestBody.content['application/json'].schema.properties.token);
    assert.ok(decide.responses['200']);
  });

  it('mints tokens that verify against the published JWKS', async () => {
    const res = await pdp.app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: { authorization: `Bearer ${pdp.adminKey}` },
      payload: { sub: 'agent-7', scopes: ['llm:openai:chat:gpt-4o-mini'], ttl_s: 120, chain: 'c', step: 's' },
    });
    assert.equal(res.statusCode, 201);
    const { token, jti, expires_at } = res.json();
    const jwks = createLocalJWKSet((await get('/.well-known/jwks.json')).json());
    const { payload } = await jwtVerify(token, jwks, { issuer: 'scopegate', audience: 'scopegate' });
    assert.equal(payload.sub, 'agent-7');
    assert.equal(payload.jti, jti);
    assert.deepEqual(payload.scopes, ['llm:openai:chat:gpt-4o-mini']);
    assert.equal(new Date(expires_at).getTime(), (payload.exp as number) * 1000);
  });

  it('caps the token lifetime and refuses non-admins', async () => {
    const tooLong = await pdp.app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: { authorization: `Bearer ${pdp.adminKey}` },
      payload: { sub: 'a', scopes: ['x:y:z'], ttl_s: 10 * 86400 },
    });
    assert.equal(tooLong.statusCode, 400);
    assert.equal(tooLong.json().code, 'token_ttl_too_long');
    const asShim = await pdp.app.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: { authorization: `Bearer ${pdp.shimKey}` },
      payload: { sub: 'a', scopes: ['x:y:z'] },
    });
    assert.equal(asShim.statusCode, 403);
  });

  it('unknown routes answer 404 with a code', async () => {
    const res = await get('/v1/nope');
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().code, 'not_found');
  });
});

describe('router errors', () => {
  it('an over-long path parameter answers 414 with a code', async () => {
    const pdp = await startPdp({ listen: false });
    try {
      const res = await pdp.app.inject({
        method: 'POST',
        url: `/v1/tokens/${'a'.repeat(200)}/revoke`,
        headers: { authorization: `Bearer ${pdp.adminKey}` },
        payload: {},
      });
      assert.equal(res.statusCode, 414);
      assert.equal(res.json().code, 'uri_too_long');
    } finally {
      await pdp.close();
    }
  });
});
