/**
 * The decision API end to end: the real app, the real default policy compiled to WASM,
 * real tokens. Covers the contract, batch, and the bad-input list of issue 2.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const ORDERS = { kind: 'sql', name: 'orders-db' } as const;
const selectOrders = { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }] } };
const deleteOrders = { sql: { statements: [{ command: 'delete', relations: ['public.orders'], columns: [], functions: [] }] } };

describe('POST /v1/decide', () => {
  let pdp: RunningPdp;
  let token: string;
  let ownKey: { jwk: JWK; kid: string };

  before(async () => {
    pdp = await startPdp({ listen: false });
    token = await pdp.mint('agent-1', ['sql:orders-db:select:public.orders'], { chain: 'support-bot', step: 'lookup' });
    const file = JSON.parse(await readFile(path.join(pdp.config.dataDir, 'signing-key.json'), 'utf8')) as {
      keys: { jwk: JWK }[];
    };
    const jwk = file.keys.at(-1)!.jwk;
    ownKey = { jwk, kid: (pdp.app.tokens.jwks().keys.at(-1) as { kid: string }).kid };
  });
  after(() => pdp.close());

  const decide = (body: unknown, key = pdp.shimKey) =>
    pdp.app.inject({ method: 'POST', url: '/v1/decide', headers: { authorization: `Bearer ${key}` }, payload: body as object });

  it('allows a request inside the token scope and stamps id and revision', async () => {
    const res = await decide({ token, resource: ORDERS, request: selectOrders, context: { session_id: 's1' } });
    assert.equal(res.statusCode, 200);
    const d = res.json();
    assert.equal(d.effect, 'allow');
    assert.equal(d.allow, true);
    assert.match(d.decision_id, /^[0-9a-f-]{36}$/);
    assert.equal(d.policy_revision, pdp.app.policy.active!.revision);
    assert.ok(d.ttl_ms > 0);
    assert.ok(d.reasons.some((r: string) => r.includes('sql:orders-db:select:public.orders')));
  });

  it('denies a request outside the token scope', async () => {
    const d = (await decide({ token, resource: ORDERS, request: deleteOrders })).json();
    assert.equal(d.effect, 'deny');
    assert.equal(d.allow, false);
    assert.equal(d.code, undefined, 'a policy denial carries no error code');
  });

  it('denies an unknown resource kind', async () => {
    const d = (await decide({ token, resource: { kind: 'ftp', name: 'x' }, request: {} })).json();
    assert.equal(d.effect, 'deny');
  });

  it('answers a batch in order', async () => {
    const res = await pdp.app.inject({
      method: 'POST',
      url: '/v1/decide/batch',
      headers: { authorization: `Bearer ${pdp.shimKey}` },
      payload: {
        requests: [
          { token, resource: ORDERS, request: selectOrders },
          { token, resource: ORDERS, request: deleteOrders },
          { token: 'nope', resource: ORDERS, request: selectOrders },
        ],
      },
    });
    assert.equal(res.statusCode, 200);
    const effects = res.json().decisions.map((d: { effect: string }) => d.effect);
    assert.deepEqual(effects, ['allow', 'deny', 'deny']);
  });

  describe('bad input', () => {
    it('malformed JSON → 400 malformed_json', async () => {
      const res = await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}`, 'content-type': 'application/json' },
        payload: '{"token": "a", "resource": ',
      });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'malformed_json');
    });

    it('oversized body → 413 body_too_large', async () => {
      const res = await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ token, resource: ORDERS, request: {}, pad: 'x'.repeat(2 * 1024 * 1024) }),
      });
      assert.equal(res.statusCode, 413);
      assert.equal(res.json().code, 'body_too_large');
    });

    it('deeply nested input → 400 input_too_deep', async () => {
      // Built as text: the document is too deep for JSON.stringify's recursion on this side.
      const deep = '{"a":'.repeat(50_000) + '"leaf"' + '}'.repeat(50_000);
      const res = await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}`, 'content-type': 'application/json' },
        payload: `{"token":${JSON.stringify(token)},"resource":{"kind":"tool","name":"t"},"request":{"tool":{"name":"t","arguments":${deep}}}}`,
      });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'input_too_deep');
    });

    it('huge arrays are refused by the schema → 400 bad_request', async () => {
      const statements = Array.from({ length: 1001 }, () => selectOrders.sql.statements[0]);
      const res = await decide({ token, resource: ORDERS, request: { sql: { statements } } });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'bad_request');
    });

    it('a wrong content type → 415', async () => {
      const res = await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}`, 'content-type': 'application/xml' },
        payload: '<decide/>',
      });
      assert.equal(res.statusCode, 415);
      assert.equal(res.json().code, 'unsupported_media_type');
    });

    it('unknown fields → 400 bad_request', async () => {
      const res = await decide({ token, resource: ORDERS, request: selectOrders, surprise: true });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'bad_request');
    });

    it('no shim credential → 401, another role → 403', async () => {
      const none = await pdp.app.inject({ method: 'POST', url: '/v1/decide', payload: { token, resource: ORDERS, request: selectOrders } });
      assert.equal(none.statusCode, 401);
      assert.equal(none.json().code, 'unauthenticated');
      const auditor = await decide({ token, resource: ORDERS, request: selectOrders }, pdp.auditorKey);
      assert.equal(auditor.statusCode, 403);
      assert.equal(auditor.json().code, 'forbidden');
    });

    const now = () => Math.floor(Date.now() / 1000);
    const signOwn = async (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
      new SignJWT({ scopes: ['sql:orders-db:select:public.orders'], ...claims })
        .setProtectedHeader({ alg: 'EdDSA', kid: ownKey.kid, ...header })
        .sign(await importJWK(ownKey.jwk, 'EdDSA'));
    const base = () => ({ sub: 'agent-1', iss: 'scopegate', aud: 'scopegate', jti: crypto.randomUUID(), iat: now(), exp: now() + 60 });

    const cases: [string, () => Promise<string>, string][] = [
      ['missing', async () => '', 'token_missing'],
      ['garbled', async () => 'not.a.jwt', 'token_malformed'],
      ['expired', () => signOwn({ ...base(), iat: now() - 600, exp: now() - 300 }), 'token_expired'],
      ['not yet valid', () => signOwn({ ...base(), nbf: now() + 300 }), 'token_not_yet_valid'],
      ['wrong aud', () => signOwn({ ...base(), aud: 'someone-else' }), 'token_invalid_audience'],
      ['wrong iss', () => signOwn({ ...base(), iss: 'evil' }), 'token_invalid_issuer'],
      [
        'alg none',
        async () => {
          const enc = (o: object) => base64url.encode(JSON.stringify(o));
          return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(base())}.`;
        },
        'token_invalid_algorithm',
      ],
      [
        'HS256 signed with the public key',
        async () => {
          const pub = JSON.stringify(pdp.app.tokens.jwks().keys[0]);
          return new SignJWT({ ...base(), scopes: ['*'] })
            .setProtectedHeader({ alg: 'HS256', kid: ownKey.kid })
            .sign(new TextEncoder().encode(pub));
        },
        'token_invalid_algorithm',
      ],
      ['unknown kid', () => signOwn(base(), { kid: 'no-such-key' }), 'token_unknown_key'],
      [
        'signed by an untrusted key',
        async () => {
          const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
          const jwk = await exportJWK(privateKey);
          return new SignJWT({ ...base(), scopes: ['*'] })
            .setProtectedHeader({ alg: 'EdDSA', kid: ownKey.kid })
            .sign(await importJWK(jwk, 'EdDSA'));
        },
        'token_invalid_signature',
      ],
    ];
    for (const [name, make, code] of cases) {
      it(`token ${name} → deny ${code}`, async () => {
        const res = await decide({ token: await make(), resource: ORDERS, request: selectOrders });
        assert.equal(res.statusCode, 200);
        const d = res.json();
        assert.equal(d.effect, 'deny');
        assert.equal(d.allow, false);
        assert.equal(d.code, code);
      });
    }

    it('keeps serving after all of the above', async () => {
      const d = (await decide({ token, resource: ORDERS, request: selectOrders })).json();
      assert.equal(d.effect, 'allow');
      const health = await pdp.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(health.statusCode, 200);
    });
  });
});
