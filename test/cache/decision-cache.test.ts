/**
 * One suite, run against both backends (in-process LRU and the real shared Redis), plus the
 * key rules and the "Redis down means fast misses" guarantee.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  createDecisionCache,
  decisionCacheKey,
  type DecisionCache,
  type DecisionCacheKeyParts,
} from '../../pdp-server/src/cache/decision-cache.js';
import type { DecisionContext, PolicyResult } from '../../pdp-server/src/contract.js';
import {
  PrivateRedis,
  SHARED_REDIS_URL,
  deleteRedisPrefix,
  requireSharedRedis,
  silentLog,
  testConfig,
  uniqueName,
} from '../cluster/test-services.js';

const allow: PolicyResult = {
  effect: 'allow',
  reasons: ['scope sql:orders-db:select:public.orders'],
  obligations: { mask: [{ target: 'public.orders.email', method: 'redact' }] },
  ttl_ms: 30_000,
};

const parts = (over: Partial<DecisionCacheKeyParts> = {}): DecisionCacheKeyParts => ({
  revision: 'rev-1',
  tokenId: 'jti-1',
  resource: { kind: 'sql', name: 'orders-db' },
  request: { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: ['public.orders.id'], functions: [] }] } },
  context: { chain: 'support-bot', step: 'lookup' },
  ...over,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cluster = uniqueName('sgtest-cache');
const backends: Array<{ name: string; make: () => DecisionCache }> = [
  { name: 'memory', make: () => createDecisionCache(testConfig({ SCOPEGATE_CACHE: 'memory' }), silentLog) },
  {
    name: 'redis',
    make: () =>
      createDecisionCache(testConfig({ REDIS_URL: SHARED_REDIS_URL, SCOPEGATE_CLUSTER: cluster }), silentLog),
  },
];

before(async () => {
  await requireSharedRedis();
});
after(async () => {
  await deleteRedisPrefix(SHARED_REDIS_URL, `${cluster}:`);
});

for (const backend of backends) {
  describe(`decision cache (${backend.name})`, () => {
    let cache: DecisionCache;
    before(async () => {
      cache = backend.make();
      // ioredis connects in the background; wait until a round trip works.
      for (let i = 0; i < 100 && cache.kind === 'redis'; i++) {
        await cache.set('warmup', allow, 1000);
        if (await cache.get('warmup')) break;
        await sleep(20);
      }
    });
    after(async () => {
      await cache.close();
    });

    it('is the backend asked for', () => {
      assert.equal(cache.kind, backend.name);
    });

    it('misses, stores, then hits, and counts both', async () => {
      const key = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      const before = cache.stats();
      assert.equal(await cache.get(key), undefined);
      await cache.set(key, allow, 60_000);
      assert.deepEqual(await cache.get(key), allow);
      const s = cache.stats();
      assert.equal(s.misses - before.misses, 1);
      assert.equal(s.hits - before.hits, 1);
    });

    it('does not store when the ttl is zero or negative', async () => {
      const k0 = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      const k1 = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      await cache.set(k0, allow, 0);
      await cache.set(k1, allow, -5);
      assert.equal(await cache.get(k0), undefined);
      assert.equal(await cache.get(k1), undefined);
    });

    it('forgets an entry once its ttl has passed', async () => {
      const key = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      await cache.set(key, allow, 40);
      await sleep(150);
      assert.equal(await cache.get(key), undefined);
    });

    it('an answer handed out cannot change what the next caller gets', async () => {
      const key = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      const mine = structuredClone(allow);
      await cache.set(key, mine, 60_000);
      mine.reasons.push('changed after set');
      const got = await cache.get(key);
      assert.ok(got);
      // memory hands out a deep-frozen entry (the push throws), redis a fresh parse (it lands
      // in the caller's copy only); either way the cache is untouched.
      try {
        got.reasons.push('tampered');
        got.obligations!.mask!.push({ target: 'x', method: 'null' });
      } catch (err) {
        assert.ok(err instanceof TypeError);
      }
      assert.deepEqual(await cache.get(key), allow);
    });

    it('keeps deny and approval_required results apart from allows', async () => {
      const deny: PolicyResult = { effect: 'deny', reasons: ['no scope'], ttl_ms: 5000 };
      const kAllow = decisionCacheKey(parts({ tokenId: uniqueName('a') }));
      const kDeny = decisionCacheKey(parts({ tokenId: uniqueName('d') }));
      await cache.set(kAllow, allow, 60_000);
      await cache.set(kDeny, deny, 60_000);
      assert.equal((await cache.get(kAllow))?.effect, 'allow');
      assert.equal((await cache.get(kDeny))?.effect, 'deny');
    });
  });
}

describe('decision cache (redis): shared between replicas and robust', () => {
  it('an entry written by one replica is a hit on another', async () => {
    const a = backends[1]!.make();
    const b = backends[1]!.make();
    try {
      const key = decisionCacheKey(parts({ tokenId: uniqueName('jti') }));
      for (let i = 0; i < 100; i++) {
        await a.set(key, allow, 60_000);
        if (await b.get(key)) break;
        await sleep(20);
      }
      assert.deepEqual(await b.get(key), allow);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a down Redis gives misses (counted as errors) and set never throws', async () => {
    const redis = await PrivateRedis.start();
    const cache = createDecisionCache(testConfig({ REDIS_URL: redis.url, SCOPEGATE_CACHE: 'redis' }), silentLog);
    try {
      const key = decisionCacheKey(parts());
      for (let i = 0; i < 100; i++) {
        await cache.set(key, allow, 60_000);
        if (await cache.get(key)) break;
        await sleep(20);
      }
      assert.deepEqual(await cache.get(key), allow);
      await redis.stop();
      const errorsBefore = cache.stats().errors;
      // Many lookups while Redis is gone: each resolves (no offline queue to stall in).
      for (let i = 0; i < 20; i++) {
        assert.equal(await cache.get(key), undefined);
        await cache.set(key, allow, 60_000);
      }
      assert.ok(cache.stats().errors - errorsBefore >= 20);
    } finally {
      await cache.close();
      await redis.dispose();
    }
  });
});

describe('decisionCacheKey', () => {
  it('is the same whatever the key order of the request', () => {
    const a = decisionCacheKey(parts({ request: { http: { method: 'GET', path: '/v1/x', query: { a: '1', b: '2' } } } }));
    const b = decisionCacheKey(parts({ request: { http: { query: { b: '2', a: '1' }, path: '/v1/x', method: 'GET' } } }));
    assert.equal(a, b);
  });

  it('ignores session, run and client address', () => {
    const base = decisionCacheKey(parts());
    const ctx: DecisionContext = { chain: 'support-bot', step: 'lookup', session_id: 's-1', run_id: 'r-9', client_addr: '10.0.0.7' };
    // The caller may hand over its whole context object; the irrelevant fields must not count.
    assert.equal(decisionCacheKey(parts({ context: ctx })), base);
    const other: DecisionContext = { ...ctx, session_id: 's-2', client_addr: '10.0.0.8' };
    assert.equal(decisionCacheKey(parts({ context: other })), base);
  });

  it('differs for anything that can change the decision', () => {
    const base = decisionCacheKey(parts());
    const variants = [
      parts({ revision: 'rev-2' }),
      parts({ tokenId: 'jti-2' }),
      parts({ resource: { kind: 'sql', name: 'billing-db' } }),
      parts({ resource: { kind: 'http', name: 'orders-db' } }),
      parts({ request: { sql: { statements: [{ command: 'delete', relations: ['public.orders'], columns: [], functions: [] }] } } }),
      parts({ context: { chain: 'support-bot', step: 'refund' } }),
      parts({ context: { chain: 'other-bot', step: 'lookup' } }),
      parts({ context: { chain: 'support-bot', step: 'lookup', shim: 'pg-proxy' } }),
    ];
    const keys = new Set([base, ...variants.map(decisionCacheKey)]);
    assert.equal(keys.size, variants.length + 1);
  });

  it('never contains the token id or request in clear', () => {
    const key = decisionCacheKey(parts({ tokenId: 'secret-looking-jti' }));
    assert.ok(!key.includes('secret-looking-jti'));
    assert.match(key, /^v1:[A-Za-z0-9_-]{43}$/);
  });
});
