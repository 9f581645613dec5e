/**
 * Decision cache: policy results keyed by policy revision + token identity + canonical request.
 *
 * Two backends behind one interface — an in-process LRU (default) and Redis (shared by all
 * replicas) — plus 'off'. The cache is an optimisation only: every failure is a miss, never an
 * error and never a stall, so a broken Redis costs latency, not correctness.
 *
 * What it does NOT do: check revocation. The decide pipeline checks revocation before it looks
 * here, so a cached allow can never outlive a revocation. A policy change cannot be answered
 * from old entries either, because the revision is part of every key.
 */
import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { stringify } from 'safe-stable-stringify';
import type { Redis } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { DecisionContext, DecisionRequestBody, PolicyResult, Resource } from '../contract.js';
import { closeRedis, createRedisConnection } from '../cluster/redis-connection.js';

export interface DecisionCache {
  readonly kind: 'memory' | 'redis' | 'off';
  /** The cached result, or undefined on a miss. Errors count as misses; never throws. */
  get(key: string): Promise<PolicyResult | undefined>;
  /** Store for ttlMs (≤ 0 → not stored). Never throws. */
  set(key: string, value: PolicyResult, ttlMs: number): Promise<void>;
  stats(): { hits: number; misses: number; errors: number };
  close(): Promise<void>;
}

export interface DecisionCacheKeyParts {
  revision: string;
  /** jti, or a hash of the token when it has none (never the raw token). */
  tokenId: string;
  resource: Resource;
  request: DecisionRequestBody;
  context: Pick<DecisionContext, 'chain' | 'step' | 'shim'>;
}

/** Most entries the in-process cache holds. */
export const MEMORY_CACHE_MAX_ENTRIES = 10_000;
/** Longest an entry lives whatever the policy asks (bounds staleness of anything not in the key). */
export const MAX_CACHE_TTL_MS = 10 * 60_000;
/** Bumped when the key layout or the stored value format changes. */
const KEY_VERSION = 'v1';

/**
 * The cache key. Only what can change the answer goes in: the revision, the token, the
 * resource, the request, and the chain/step/shim of the context. Session, run and client
 * address vary per call without changing the decision, so they are left out; key order never
 * matters because the JSON is canonical (sorted keys).
 */
export function decisionCacheKey(parts: DecisionCacheKeyParts): string {
  const canonical = stringify({
    revision: parts.revision,
    token: parts.tokenId,
    resource: { kind: parts.resource.kind, name: parts.resource.name },
    request: parts.request,
    context: { chain: parts.context.chain, step: parts.context.step, shim: parts.context.shim },
  });
  return `${KEY_VERSION}:${hash('sha256', canonical ?? '', 'base64url')}`;
}

export function createDecisionCache(config: Readonly<Config>, log: FastifyBaseLogger, redis?: Redis): DecisionCache {
  const kind = config.cache === 'auto' ? (config.redisUrl || redis ? 'redis' : 'memory') : config.cache;
  switch (kind) {
    case 'off':
      return offCache();
    case 'memory':
      return memoryCache(MEMORY_CACHE_MAX_ENTRIES);
    case 'redis': {
      if (redis) return redisCache(redis, `${config.cluster}:decision:`, log, false);
      if (!config.redisUrl) throw new Error('redis decision cache needs REDIS_URL'); // config.ts already refuses this
      return redisCache(createRedisConnection(config.redisUrl, 'cache', log), `${config.cluster}:decision:`, log, true);
    }
  }
}

function counters() {
  const c = { hits: 0, misses: 0, errors: 0 };
  return { c, stats: () => ({ ...c }) };
}

function clampTtl(ttlMs: number): number {
  return Number.isFinite(ttlMs) ? Math.min(Math.floor(ttlMs), MAX_CACHE_TTL_MS) : 0;
}

/** Reject anything that is not a PolicyResult, so a corrupt entry is a miss, not a decision. */
function parseResult(raw: unknown): PolicyResult | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  if (r.effect !== 'allow' && r.effect !== 'deny' && r.effect !== 'approval_required') return undefined;
  if (!Array.isArray(r.reasons) || !r.reasons.every((x) => typeof x === 'string')) return undefined;
  return raw as PolicyResult;
}

export function offCache(): DecisionCache {
  const { c, stats } = counters();
  return {
    kind: 'off',
    async get() {
      c.misses++;
      return undefined;
    },
    async set() {},
    stats,
    async close() {},
  };
}

export function memoryCache(max: number): DecisionCache {
  const { c, stats } = counters();
  const lru = new LRUCache<string, PolicyResult>({ max });
  return {
    kind: 'memory',
    async get(key) {
      const v = lru.get(key);
      if (v === undefined) {
        c.misses++;
        return undefined;
      }
      c.hits++;
      // Stored deep-frozen (below), so handing out the same object is safe: nobody can
      // change what the next caller gets, and a hit costs no copy.
      return v;
    },
    async set(key, value, ttlMs) {
      const ttl = clampTtl(ttlMs);
      if (ttl <= 0) return;
      try {
        lru.set(key, deepFreeze(structuredClone(value)), { ttl });
      } catch {
        c.errors++;
      }
    },
    stats,
    async close() {
      lru.clear();
    },
  };
}

export function redisCache(redis: Redis, prefix: string, log: FastifyBaseLogger, owned: boolean): DecisionCache {
  const { c, stats } = counters();
  // Log a failing Redis once per streak of errors, not once per decision.
  let failing = false;
  const failed = (op: string, err: unknown) => {
    c.errors++;
    if (!failing) log.warn({ op, err: (err as Error).message }, 'decision cache unavailable; deciding uncached');
    failing = true;
  };
  return {
    kind: 'redis',
    async get(key) {
      try {
        const raw = await redis.get(prefix + key);
        failing = false;
        const v = raw === null ? undefined : parseResult(JSON.parse(raw));
        if (v === undefined) {
          c.misses++;
          return undefined;
        }
        c.hits++;
        return v;
      } catch (err) {
        failed('get', err);
        c.misses++;
        return undefined;
      }
    },
    async set(key, value, ttlMs) {
      const ttl = clampTtl(ttlMs);
      if (ttl <= 0) return;
      try {
        await redis.set(prefix + key, JSON.stringify(value), 'PX', ttl);
        failing = false;
      } catch (err) {
        failed('set', err);
      }
    },
    stats,
    async close() {
      if (owned) await closeRedis(redis);
    },
  };
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
