/**
 * Policy bundles between replicas in one process: a shared Postgres database, the shared Redis
 * for announcements, and a private redis-server for the fault case. The bytes here are opaque
 * (the engine that loads them is tested elsewhere); what matters is who gets which, when.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRedisClusterBus, type ClusterBus } from '../../pdp-server/src/cluster/cluster-bus.js';
import { createPolicyDistribution, type PolicyDistribution } from '../../pdp-server/src/cluster/policy-distribution.js';
import { migrate, openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import {
  PrivateRedis,
  SHARED_REDIS_URL,
  createThrowawayDatabase,
  eventually,
  requireSharedRedis,
  silentLog,
  testConfig,
  uniqueName,
  type ThrowawayDatabase,
} from './test-services.js';

const config = testConfig({});

interface Replica {
  dist: PolicyDistribution;
  bus: ClusterBus;
  /** What latest() returned at start (the app loads it before it listens for announcements). */
  initial: string | undefined;
  got: Array<{ revision: string; bundle: Buffer }>;
  close(): Promise<void>;
}

async function startReplica(db: Db, redisUrl: string, cluster: string, name: string): Promise<Replica> {
  const bus = createRedisClusterBus({ redisUrl, cluster, instanceId: name, log: silentLog });
  const dist = await createPolicyDistribution(db, config, silentLog, bus);
  // The app's order: load latest(), then listen.
  const initial = (await dist.latest())?.revision;
  const got: Replica['got'] = [];
  dist.onBundle((revision, bundle) => got.push({ revision, bundle }));
  return {
    dist,
    bus,
    initial,
    got,
    async close() {
      await dist.close();
      await bus.close();
    },
  };
}

const last = (r: Replica) => r.got.at(-1)?.revision;

describe('policy distribution', () => {
  let pgdb: ThrowawayDatabase;
  let db: Db;
  let a: Replica;
  let b: Replica;
  const cluster = uniqueName('sgtest-pol');

  before(async () => {
    await requireSharedRedis();
    pgdb = await createThrowawayDatabase();
    db = await openPostgres(pgdb.url, silentLog);
    await migrate(db);
    a = await startReplica(db, SHARED_REDIS_URL, cluster, 'a');
    b = await startReplica(db, SHARED_REDIS_URL, cluster, 'b');
    await eventually('both subscribed', () => a.bus.connected && b.bus.connected);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await db?.close();
    await pgdb?.drop();
  });

  it('a bundle published on one replica reaches the other, byte for byte', async () => {
    const bundle = randomBytes(64 * 1024);
    await a.dist.publish('rev-1', bundle);
    await eventually('b receives rev-1', () => last(b) === 'rev-1', 3000);
    assert.ok(b.got.at(-1)!.bundle.equals(bundle));
    assert.equal(a.got.length, 0, 'the publisher loaded its own bundle already');
  });

  it('a replica starting later gets the newest from latest() and is not handed it again', async () => {
    const c = await startReplica(db, SHARED_REDIS_URL, cluster, 'c');
    try {
      assert.equal(c.initial, 'rev-1');
      await eventually('c subscribed', () => c.bus.connected);
      await a.dist.publish('rev-2', randomBytes(100));
      await eventually('c receives rev-2', () => last(c) === 'rev-2', 3000);
      assert.deepEqual(c.got.map((g) => g.revision), ['rev-2']);
    } finally {
      await c.close();
    }
  });

  it('a bundle published while a replica loads latest() is handed over once it listens', async () => {
    const late = await createPolicyDistribution(db, config, silentLog);
    try {
      assert.equal((await late.latest())?.revision, 'rev-2');
      // …the engine is busy loading rev-2 when another replica publishes:
      await a.dist.publish('rev-3', randomBytes(100));
      const got: string[] = [];
      late.onBundle((revision) => got.push(revision));
      await eventually('late replica catches up', () => got.at(-1) === 'rev-3', 3000);
    } finally {
      await late.close();
    }
  });

  it('quick successive uploads end with every replica on the last one', async () => {
    // What each replica's engine runs: its own uploads and whatever it is handed, in order.
    const current = new Map<Replica, string>();
    for (const r of [a, b]) r.dist.onBundle((revision) => current.set(r, revision));
    for (let i = 0; i < 5; i++) {
      const r = i % 2 ? b : a;
      await r.dist.publish(`burst-${i}`, randomBytes(1000));
      current.set(r, `burst-${i}`);
    }
    await eventually('b on burst-4', () => current.get(b) === 'burst-4', 3000);
    // a uploaded burst-4 itself; whatever it is handed late (b's burst-1/3) must not replace it.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(current.get(a), 'burst-4');
    assert.equal((await b.dist.latest())?.revision, 'burst-4');
  });

  it('publishing an old revision again (a rollback) makes it the newest everywhere', async () => {
    await b.dist.publish('rev-1', randomBytes(10));
    await eventually('a rolls back to rev-1', () => last(a) === 'rev-1', 3000);
    assert.equal((await a.dist.latest())?.revision, 'rev-1');
  });
});

describe('policy distribution: Redis goes away and comes back', () => {
  let pgdb: ThrowawayDatabase;
  let db: Db;
  let redis: PrivateRedis;
  let a: Replica;
  let b: Replica;

  before(async () => {
    pgdb = await createThrowawayDatabase();
    db = await openPostgres(pgdb.url, silentLog);
    await migrate(db);
    redis = await PrivateRedis.start();
    a = await startReplica(db, redis.url, 'sgtest', 'a');
    b = await startReplica(db, redis.url, 'sgtest', 'b');
    await eventually('both subscribed', () => a.bus.connected && b.bus.connected);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await redis?.dispose();
    await db?.close();
    await pgdb?.drop();
  });

  it('polls for the newest bundle while Redis is down, announces again once it is back', async () => {
    await redis.stop();
    await eventually('buses notice', () => !a.bus.connected && !b.bus.connected);
    await a.dist.publish('while-down', randomBytes(100));
    await eventually('b polls it from the store', () => last(b) === 'while-down', 4000);
    await redis.start();
    await eventually('resubscribed', () => a.bus.connected && b.bus.connected, 5000);
    await a.dist.publish('after-return', randomBytes(100));
    await eventually('b gets it', () => last(b) === 'after-return', 3000);
  });
});
