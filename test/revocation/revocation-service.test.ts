/**
 * Revocation across replicas in one process: each "replica" has its own store connection,
 * its own cluster bus and its own service, sharing one real Postgres database and one real
 * Redis — the shared one for fan-out, a private redis-server for the fault test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRedisClusterBus, type ClusterBus } from '../../pdp-server/src/cluster/cluster-bus.js';
import { createRevocationService, type RevocationService } from '../../pdp-server/src/revocation/revocation-service.js';
import { migrate, openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import type { SubjectClaims } from '../../pdp-server/src/contract.js';
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
} from '../cluster/test-services.js';

const config = testConfig({});
const nowS = () => Math.floor(Date.now() / 1000);
const claims = (over: Partial<SubjectClaims>): SubjectClaims => ({
  sub: 'agent-1',
  iss: 'scopegate',
  jti: randomUUID(),
  scopes: ['sql:orders-db:select:*'],
  iat: nowS() - 10,
  exp: nowS() + 300,
  ...over,
});

interface Replica {
  db: Db;
  bus: ClusterBus;
  svc: RevocationService;
  close(): Promise<void>;
}

async function startReplica(dbUrl: string, redisUrl: string, cluster: string, name: string): Promise<Replica> {
  const db = await openPostgres(dbUrl, silentLog);
  const bus = createRedisClusterBus({ redisUrl, cluster, instanceId: name, log: silentLog });
  const svc = await createRevocationService(db, config, silentLog, bus);
  return {
    db,
    bus,
    svc,
    async close() {
      await svc.close();
      await bus.close();
      await db.close();
    },
  };
}

describe('revocation service: fan-out between replicas over the shared Redis', () => {
  let pgdb: ThrowawayDatabase;
  let a: Replica;
  let b: Replica;
  const cluster = uniqueName('sgtest-rev');

  before(async () => {
    await requireSharedRedis();
    pgdb = await createThrowawayDatabase();
    const m = await openPostgres(pgdb.url);
    await migrate(m);
    await m.close();
    a = await startReplica(pgdb.url, SHARED_REDIS_URL, cluster, 'a');
    b = await startReplica(pgdb.url, SHARED_REDIS_URL, cluster, 'b');
    await eventually('both buses subscribed', () => a.bus.connected && b.bus.connected);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await pgdb?.drop();
  });

  it('a token revoked on one replica is revoked on the other', async () => {
    const token = claims({});
    assert.equal(a.svc.isRevoked(token), false);
    assert.equal(b.svc.isRevoked(token), false);
    const r = await a.svc.revokeToken(token.jti!, { exp: token.exp!, reason: 'leaked', by: 'admin' });
    assert.equal(r.jti, token.jti);
    assert.equal(r.reason, 'leaked');
    assert.equal(r.by, 'admin');
    // In force on the revoking replica when the call returns…
    assert.equal(a.svc.isRevoked(token), true);
    // …and on the other one as soon as the message lands (well inside the 5 s safety poll).
    await eventually('revoked on b', () => b.svc.isRevoked(token), 3000);
    // Other tokens of the same subject are untouched.
    assert.equal(b.svc.isRevoked(claims({})), false);
  });

  it('revoking a subject revokes its tokens issued before now, not later ones, not other subjects', async () => {
    const sub = uniqueName('agent');
    const old = claims({ sub, iat: nowS() - 60 });
    const noIat = claims({ sub });
    delete noIat.iat;
    const other = claims({ sub: uniqueName('agent'), iat: nowS() - 60 });
    await b.svc.revokeSubject(sub, { by: 'ops', reason: 'compromised agent' });
    const later = claims({ sub, iat: nowS() + 2 });
    for (const r of [a, b]) {
      await eventually('subject revoked', () => r.svc.isRevoked(old), 3000);
      assert.equal(r.svc.isRevoked(noIat), true, 'a token without iat cannot prove it is newer');
      assert.equal(r.svc.isRevoked(later), false);
      assert.equal(r.svc.isRevoked(other), false);
    }
  });

  it('is idempotent per jti and listed once', async () => {
    const jti = randomUUID();
    const r1 = await a.svc.revokeToken(jti, { by: 'admin' });
    const r2 = await b.svc.revokeToken(jti, { by: 'someone-else' });
    assert.equal(r2.id, r1.id);
    const listed = (await b.svc.list()).filter((r) => r.jti === jti);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.expires_at, null);
  });

  it('a replica started later loads every revocation from the store', async () => {
    const token = claims({});
    await a.svc.revokeToken(token.jti!, { by: 'admin' });
    const c = await startReplica(pgdb.url, SHARED_REDIS_URL, cluster, 'c');
    try {
      assert.equal(c.svc.isRevoked(token), true);
    } finally {
      await c.close();
    }
  });

  it('does not keep (or list) revocations of tokens that have already expired', async () => {
    const token = claims({ exp: nowS() - 3600 });
    await a.svc.revokeToken(token.jti!, { exp: token.exp!, by: 'admin' });
    assert.equal(a.svc.isRevoked(token), false);
    assert.ok(!(await a.svc.list()).some((r) => r.jti === token.jti));
  });

  it('ignores malformed bus messages', async () => {
    const before = (await a.svc.list()).length;
    await a.bus.publish('revocation', { id: 'x', jti: 'y' });
    await a.bus.publish('revocation', 'nonsense');
    const token = claims({});
    await a.svc.revokeToken(token.jti!, { by: 'admin' });
    await eventually('later message still applied', () => b.svc.isRevoked(token), 3000);
    assert.equal(b.svc.isRevoked(claims({ jti: 'y' })), false);
    assert.equal((await a.svc.list()).length, before + 1);
  });
});

describe('revocation service: Redis goes away and comes back', () => {
  let pgdb: ThrowawayDatabase;
  let redis: PrivateRedis;
  let a: Replica;
  let b: Replica;

  before(async () => {
    pgdb = await createThrowawayDatabase();
    const m = await openPostgres(pgdb.url);
    await migrate(m);
    await m.close();
    redis = await PrivateRedis.start();
    a = await startReplica(pgdb.url, redis.url, 'sgtest', 'a');
    b = await startReplica(pgdb.url, redis.url, 'sgtest', 'b');
    await eventually('both buses subscribed', () => a.bus.connected && b.bus.connected);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await redis?.dispose();
    await pgdb?.drop();
  });

  it('polls the store while Redis is down and resubscribes when it returns', async () => {
    await redis.stop();
    await eventually('buses notice', () => !a.bus.connected && !b.bus.connected);

    // Revoked while Redis is away: the publish fails, the other replica reads it from the store.
    const t1 = claims({});
    const s1 = uniqueName('agent');
    await a.svc.revokeToken(t1.jti!, { by: 'admin' });
    await a.svc.revokeSubject(s1, { by: 'admin' });
    await eventually('b polls the store', () => b.svc.isRevoked(t1) && b.svc.isRevoked(claims({ sub: s1 })), 3000);

    await redis.start();
    await eventually('buses resubscribe by themselves', () => a.bus.connected && b.bus.connected, 5000);

    // Back on pub/sub.
    const t2 = claims({});
    await b.svc.revokeToken(t2.jti!, { by: 'admin' });
    await eventually('a gets it over the bus', () => a.svc.isRevoked(t2), 3000);
    assert.equal(a.svc.isRevoked(t1), true);
  });
});
