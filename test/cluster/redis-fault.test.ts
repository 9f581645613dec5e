/**
 * Redis faults with real PDP processes: two replicas on a private redis-server (never the
 * machine's), which is killed while the replicas are under load and started again.
 * Every answer stays correct (uncached while Redis is away), a revocation made meanwhile is
 * enforced everywhere (store polling), and the replicas reconnect on their own.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KEYS, WEB_SEARCH_SCOPE, startReplicas, type PdpReplica } from './pdp-replicas.js';
import { PrivateRedis, createThrowawayDatabase, eventually, type ThrowawayDatabase } from './test-services.js';

describe('Redis stopped under load and started again', () => {
  let pgdb: ThrowawayDatabase;
  let redis: PrivateRedis;
  let dir: string;
  let replicas: PdpReplica[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sg-fault-'));
    pgdb = await createThrowawayDatabase();
    redis = await PrivateRedis.start();
    replicas = await startReplicas(2, { dataDir: path.join(dir, 'data'), databaseUrl: pgdb.url, redisUrl: redis.url, cluster: 'sgfault' });
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.dispose();
    await pgdb?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps answering correctly, enforces revocations made meanwhile, and reconnects', async () => {
    const [a, b] = replicas as [PdpReplica, PdpReplica];
    const good = await a.mint('research-bot', [WEB_SEARCH_SCOPE]);
    const doomed = await a.mint('research-bot', [WEB_SEARCH_SCOPE]);
    const later = await a.mint('research-bot', [WEB_SEARCH_SCOPE]);

    // Load: 4 workers deciding on both replicas until told to stop (bounded by the test timeout).
    const wrong: string[] = [];
    let answered = 0;
    let stop = false;
    const worker = async (i: number) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        const r = replicas[(i + n) % replicas.length]!;
        try {
          const d = await r.decideToolCall(good.token);
          answered++;
          if (d.effect !== 'allow') wrong.push(`${r.name}: good token got ${d.effect} ${d.code ?? ''}`);
        } catch (err) {
          wrong.push(`${r.name}: ${(err as Error).message}`);
        }
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));

    try {
      await eventually('load running', () => answered > 50, 10_000);
      for (const r of replicas) assert.equal((await r.decideToolCall(doomed.token)).effect, 'allow');

      await redis.stop();
      const atStop = answered;
      await eventually('answers continue without Redis', () => answered > atStop + 50, 10_000);

      // Revoked while Redis is away: b must learn it from the store (≤ ~1 s), cached allow or not.
      assert.equal((await a.request('POST', `/v1/tokens/${doomed.jti}/revoke`, KEYS.admin)).status, 201);
      for (const r of replicas) {
        await eventually(`${r.name} denies the revoked token`, async () => (await r.decideToolCall(doomed.token)).code === 'token_revoked', 3000);
      }

      await redis.start();
      for (const r of replicas) {
        await eventually(`${r.name} resubscribes`, () => r.countLogs('cluster bus subscribed') >= 2, 10_000);
      }
      const atStart = answered;
      await eventually('answers continue after Redis returns', () => answered > atStart + 50, 10_000);

      // Back on pub/sub: a revocation on b reaches a well inside the 5 s safety poll.
      assert.equal((await b.request('POST', `/v1/tokens/${later.jti}/revoke`, KEYS.admin)).status, 201);
      await eventually('a denies over the bus', async () => (await a.decideToolCall(later.token)).code === 'token_revoked', 3000);
      for (const r of replicas) assert.equal((await r.decideToolCall(doomed.token)).code, 'token_revoked');
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(wrong, [], 'every answer for the untouched token was a correct allow');
  });
});
