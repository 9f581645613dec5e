/**
 * The shims' PDP client against a real PDP: local caching of allows, fail-closed answers,
 * and the revocation feed that makes a revoked token stop working at the shim at once
 * (not after the cached allow's ttl_ms).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PdpClient } from '../../shims/pdp-client/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const ORDERS = { kind: 'sql', name: 'orders-db' } as const;
const select = { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }] } };

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(cond(), what);
}

describe('PdpClient', () => {
  let pdp: RunningPdp;
  before(async () => {
    pdp = await startPdp();
  });
  after(() => pdp.close());

  it('serves repeated allows from its cache, and drops them when the token is revoked', async () => {
    const client = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'test' });
    try {
      await until(() => client.cacheLive, 'the revocation feed connects');
      const token = await pdp.mint('agent-rev', ['sql:orders-db:select:public.orders']);
      const first = await client.decide({ token, resource: ORDERS, request: select });
      assert.equal(first.effect, 'allow');
      const second = await client.decide({ token, resource: ORDERS, request: select });
      assert.equal(second.decision_id, first.decision_id, 'the second answer came from the local cache');

      const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
      const revoke = await fetch(`${pdp.url}/v1/tokens/${jti}/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${pdp.adminKey}`, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(revoke.status, 201);
      // The feed event clears the cache; then the PDP itself denies the revoked token.
      let after = await client.decide({ token, resource: ORDERS, request: select });
      for (let i = 0; i < 200 && after.effect === 'allow'; i++) {
        await new Promise((r) => setTimeout(r, 25));
        after = await client.decide({ token, resource: ORDERS, request: select });
      }
      assert.equal(after.effect, 'deny');
      assert.equal(after.code, 'token_revoked');
    } finally {
      await client.close();
    }
  });

  it('keys frozen (memoized) and plain statement lists alike, and never serves another request from the cache', async () => {
    const client = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'test' });
    try {
      await until(() => client.cacheLive, 'the revocation feed connects');
      const token = await pdp.mint('agent-memo', ['sql:orders-db:select:public.*']);
      const statement = () => ({ command: 'select', relations: ['public.orders'], columns: ['public.orders.id'], functions: [] });
      const frozen = Object.freeze([Object.freeze({ ...statement(), relations: Object.freeze(['public.orders']), columns: Object.freeze(['public.orders.id']), functions: Object.freeze([]) })]);
      const plain = { sql: { statements: [statement()], fingerprint: 'fp-1' } };
      // text_sha256 is left out of the key, and read lazily: a getter that throws proves it is not evaluated.
      const lazy = { sql: { statements: frozen as unknown as typeof plain.sql.statements, fingerprint: 'fp-1', get text_sha256(): string { throw new Error('read'); } } };
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: plain })?.decision, undefined);
      const first = await client.decide({ token, resource: ORDERS, request: plain });
      assert.equal(first.effect, 'allow');
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: lazy })?.decision.decision_id, first.decision_id, 'frozen and plain lists share the entry');
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: lazy })?.decision.decision_id, first.decision_id, 'memoized JSON keys the same');
      // Different statements, fingerprint or resource: no hit.
      const other = { sql: { statements: [{ ...statement(), columns: ['public.orders.total'] }], fingerprint: 'fp-1' } };
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: other })?.decision, undefined);
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: { sql: { statements: frozen as unknown as typeof plain.sql.statements, fingerprint: 'fp-2' } } })?.decision, undefined);
      assert.equal(client.cachedAllowLease({ token, resource: { kind: 'sql', name: 'other-db' }, request: plain })?.decision, undefined);
      // A lease on the cached allow holds until the cache is dropped (as on a revocation).
      const lease = client.cachedAllowLease({ token, resource: ORDERS, request: plain });
      assert.ok(lease && client.leaseValid(lease));
      assert.ok(!client.leaseValid({ ...lease, expiresAt: Date.now() - 1 }), 'an expired lease does not hold');
      client.clearCache();
      assert.equal(client.leaseValid(lease), false, 'a dropped cache ends every lease');
      assert.equal(client.cachedAllowLease({ token, resource: ORDERS, request: plain }), undefined);
    } finally {
      await client.close();
    }
  });
  it('answers deny with pdp_unavailable when the PDP cannot be reached', async () => {
    const client = new PdpClient({ url: 'http://127.0.0.1:9', key: 'k'.repeat(20), shim: 'test', timeoutMs: 500 });
    try {
      const d = await client.decide({ token: 'x', resource: ORDERS, request: select });
      assert.equal(d.effect, 'deny');
      assert.equal(d.allow, false);
      assert.equal(d.code, 'pdp_unavailable');
      assert.equal(client.cacheLive, false, 'no feed, no cache');
    } finally {
      await client.close();
    }
  });
});
