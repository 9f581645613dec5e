/**
 * Embedded mode (no REDIS_URL, no DATABASE_URL): revocations and policy bundles work with the
 * PGlite store alone and survive a restart of the services. One PGlite instance for both,
 * because creating one is the slow part.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createClusterBus } from '../../pdp-server/src/cluster/cluster-bus.js';
import { createPolicyDistribution } from '../../pdp-server/src/cluster/policy-distribution.js';
import { createRevocationService } from '../../pdp-server/src/revocation/revocation-service.js';
import { migrate, openPglite } from '../../pdp-server/src/store/db.js';
import { silentLog, testConfig } from './test-services.js';

it('embedded mode: revocations and bundles with the PGlite store only', async () => {
  const config = testConfig({});
  assert.equal(createClusterBus(config, silentLog), undefined, 'no bus without REDIS_URL');
  const db = await openPglite(undefined);
  try {
    await migrate(db);
    const now = Math.floor(Date.now() / 1000);
    const token = { sub: 'agent-1', iss: 'scopegate', jti: randomUUID(), scopes: [], iat: now - 5, exp: now + 300 };

    const svc = await createRevocationService(db, config, silentLog);
    await svc.revokeToken(token.jti, { by: 'admin', exp: token.exp });
    assert.equal(svc.isRevoked(token), true);
    await svc.close();

    const dist = await createPolicyDistribution(db, config, silentLog);
    assert.equal(await dist.latest(), undefined);
    const bundle = randomBytes(2048);
    await dist.publish('rev-embedded', bundle);
    await dist.close();

    // A restart on the same store still knows both.
    const svc2 = await createRevocationService(db, config, silentLog);
    assert.equal(svc2.isRevoked(token), true);
    assert.equal((await svc2.list())[0]?.jti, token.jti);
    await svc2.close();
    const dist2 = await createPolicyDistribution(db, config, silentLog);
    const latest = await dist2.latest();
    assert.equal(latest?.revision, 'rev-embedded');
    assert.ok(latest?.bundle.equals(bundle));
    await dist2.close();
  } finally {
    await db.close();
  }
});
