/**
 * Three PDP processes sharing one Redis (the machine's, under a unique cluster name) and one
 * Postgres database (a throwaway one): a revocation on one replica is enforced by all, a
 * policy uploaded to one is answered with by all.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BUNDLED_POLICY_DIR } from '../../pdp-server/src/config.js';
import { buildWasmBundle, findOpa } from '../../pdp-server/src/policy/opa-cli.js';
import { KEYS, WEB_SEARCH_SCOPE, startReplicas, type PdpReplica } from './pdp-replicas.js';
import {
  SHARED_REDIS_URL,
  createThrowawayDatabase,
  deleteRedisPrefix,
  eventually,
  requireSharedRedis,
  uniqueName,
  type ThrowawayDatabase,
} from './test-services.js';

describe('three replicas sharing Redis and Postgres', () => {
  let pgdb: ThrowawayDatabase;
  let dir: string;
  let replicas: PdpReplica[] = [];
  const cluster = uniqueName('sgtest-multi');

  before(async () => {
    await requireSharedRedis();
    dir = await mkdtemp(path.join(os.tmpdir(), 'sg-multi-'));
    pgdb = await createThrowawayDatabase();
    replicas = await startReplicas(3, { dataDir: path.join(dir, 'data'), databaseUrl: pgdb.url, redisUrl: SHARED_REDIS_URL, cluster });
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await pgdb?.drop();
    await deleteRedisPrefix(SHARED_REDIS_URL, `${cluster}:`);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a token revoked on one replica is denied by all three, cached allows included', async () => {
    const [a, b] = replicas as [PdpReplica, PdpReplica, PdpReplica];
    const { token, jti } = await a.mint('research-bot', [WEB_SEARCH_SCOPE]);
    // Twice on every replica: the second answer comes from the (shared Redis) cache.
    for (const r of replicas) {
      for (let i = 0; i < 2; i++) {
        const d = await r.decideToolCall(token);
        assert.equal(d.effect, 'allow', `${r.name}: ${JSON.stringify(d)}`);
      }
    }
    const rev = await b.request<{ jti: string }>('POST', `/v1/tokens/${jti}/revoke`, KEYS.admin, { reason: 'test' });
    assert.equal(rev.status, 201);
    for (const r of replicas) {
      await eventually(`${r.name} denies`, async () => (await r.decideToolCall(token)).code === 'token_revoked', 3000);
    }
    // Every replica lists it (one store).
    for (const r of replicas) {
      const list = await r.request<{ revocations: Array<{ jti: string | null }> }>('GET', '/v1/revocations', KEYS.admin);
      assert.ok(list.body.revocations.some((x) => x.jti === jti));
    }
  });

  it('revoking a subject on one replica denies its earlier tokens on all three', async () => {
    const [a, , c] = replicas as [PdpReplica, PdpReplica, PdpReplica];
    const sub = uniqueName('bot');
    const { token } = await a.mint(sub, [WEB_SEARCH_SCOPE]);
    for (const r of replicas) assert.equal((await r.decideToolCall(token)).effect, 'allow');
    assert.equal((await c.request('POST', `/v1/subjects/${sub}/revoke`, KEYS.admin)).status, 201);
    for (const r of replicas) {
      await eventually(`${r.name} denies`, async () => (await r.decideToolCall(token)).code === 'token_revoked', 3000);
    }
  });

  it('a policy uploaded to one replica is answered with by all three', async () => {
    const [a, , c] = replicas as [PdpReplica, PdpReplica, PdpReplica];
    const { token } = await a.mint('research-bot', [WEB_SEARCH_SCOPE]);
    const before = await c.decideToolCall(token);
    assert.equal(before.effect, 'allow');

    // The default library with one change that flips the answer: web-search allows now live 1234 ms.
    const polDir = path.join(dir, 'policy');
    await cp(BUNDLED_POLICY_DIR, polDir, { recursive: true });
    const dataFile = path.join(polDir, 'data.json');
    const data = JSON.parse(await readFile(dataFile, 'utf8')) as { scopegate_config: { ttl_ms: { allow: number } } };
    data.scopegate_config.ttl_ms.allow = 1234;
    await writeFile(dataFile, JSON.stringify(data));
    const bundleFile = path.join(dir, 'bundle.tar.gz');
    await buildWasmBundle({ opa: await findOpa(), dirs: [polDir], outFile: bundleFile });

    const up = await c.request<{ revision: string }>('PUT', '/v1/policies', KEYS.admin, await readFile(bundleFile), 'application/gzip');
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const revision = up.body.revision;
    assert.notEqual(revision, before.policy_revision);

    for (const r of replicas) {
      await eventually(`${r.name} on the new revision`, async () => (await r.decideToolCall(token)).policy_revision === revision, 5000);
      // Once switched, never an answer from the old revision's cache entries.
      const d = await r.decideToolCall(token);
      assert.equal(d.policy_revision, revision);
      assert.equal(d.ttl_ms, 1234);
    }
  });
});
