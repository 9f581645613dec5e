/**
 * The revocation API over HTTP (app.inject): admin only, schemas on every route, stable error
 * codes. Built from the PDP's own auth and error plugins and the real revocation service on a
 * throwaway Postgres database, without the policy engine (not needed here).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { loadCredentials } from '../../pdp-server/src/auth/credentials.js';
import authPlugin from '../../pdp-server/src/plugins/auth.js';
import errorsPlugin from '../../pdp-server/src/plugins/errors.js';
import revocationRoutes from '../../pdp-server/src/routes/revocations.js';
import { createRevocationService, type RevocationService } from '../../pdp-server/src/revocation/revocation-service.js';
import { migrate, openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import { createThrowawayDatabase, silentLog, testConfig, type ThrowawayDatabase } from '../cluster/test-services.js';

const ADMIN = 'admin-key-0123456789abcdef';
const SHIM = 'shim-key-0123456789abcdef';

describe('revocation routes', () => {
  let pgdb: ThrowawayDatabase;
  let db: Db;
  let svc: RevocationService;
  let app: FastifyInstance;

  before(async () => {
    const config = testConfig({
      SCOPEGATE_ADMIN_KEY: ADMIN,
      SCOPEGATE_SHIM_KEY: SHIM,
      SCOPEGATE_AUDITOR_KEY: 'auditor-key-0123456789abcdef',
      SCOPEGATE_APPROVER_KEY: 'approver-key-0123456789abcdef',
    });
    pgdb = await createThrowawayDatabase();
    db = await openPostgres(pgdb.url, silentLog);
    await migrate(db);
    svc = await createRevocationService(db, config, silentLog);
    // The same validator settings as the PDP's app.ts: nothing coerced, nothing silently dropped.
    app = Fastify({ ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } } });
    await app.register(errorsPlugin);
    await app.register(authPlugin, { credentials: await loadCredentials(config) });
    await app.register(revocationRoutes, { revocations: svc });
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await svc?.close();
    await db?.close();
    await pgdb?.drop();
  });

  const post = (url: string, key: string | undefined, payload?: unknown) =>
    app.inject({
      method: 'POST',
      url,
      headers: key ? { authorization: `Bearer ${key}` } : {},
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });

  it('revokes a token by jti (with or without a body)', async () => {
    const jti = randomUUID();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const res = await post(`/v1/tokens/${jti}/revoke`, ADMIN, { reason: 'leaked in a log', exp });
    assert.equal(res.statusCode, 201);
    const body = res.json();
    assert.equal(body.jti, jti);
    assert.equal(body.sub, null);
    assert.equal(body.reason, 'leaked in a log');
    assert.ok(body.expires_at);
    assert.equal(svc.isRevoked({ sub: 'x', iss: 'scopegate', jti, scopes: [] }), true);

    const bare = randomUUID();
    const res2 = await post(`/v1/tokens/${bare}/revoke`, ADMIN);
    assert.equal(res2.statusCode, 201, res2.body);
    assert.equal(res2.json().expires_at, null);
  });

  it('revokes every earlier token of a subject', async () => {
    const res = await post('/v1/subjects/agent-7/revoke', ADMIN, { reason: 'compromised' });
    assert.equal(res.statusCode, 201);
    const body = res.json();
    assert.equal(body.sub, 'agent-7');
    assert.equal(body.jti, null);
    assert.ok(Date.parse(body.issued_before) > 0);
    const iat = Math.floor(Date.now() / 1000) - 30;
    assert.equal(svc.isRevoked({ sub: 'agent-7', iss: 'scopegate', jti: randomUUID(), scopes: [], iat }), true);
  });

  it('lists revocations newest first', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/revocations', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.statusCode, 200);
    const list = res.json().revocations as Array<{ created_at: string; sub: string | null }>;
    assert.ok(list.length >= 3);
    assert.equal(list[0]!.sub, 'agent-7');
    const times = list.map((r) => Date.parse(r.created_at));
    assert.deepEqual(times, [...times].sort((x, y) => y - x));
  });

  it('is admin only', async () => {
    const none = await post(`/v1/tokens/${randomUUID()}/revoke`, undefined);
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, 'unauthenticated');
    const shim = await post('/v1/subjects/agent-7/revoke', SHIM);
    assert.equal(shim.statusCode, 403);
    assert.equal(shim.json().code, 'forbidden');
    const list = await app.inject({ method: 'GET', url: '/v1/revocations', headers: { authorization: `Bearer ${SHIM}` } });
    assert.equal(list.json().code, 'forbidden');
  });

  it('rejects malformed input with bad_request', async () => {
    const extra = await post(`/v1/tokens/${randomUUID()}/revoke`, ADMIN, { reason: 'x', surprise: true });
    assert.equal(extra.statusCode, 400);
    assert.equal(extra.json().code, 'bad_request');
    const badExp = await post(`/v1/tokens/${randomUUID()}/revoke`, ADMIN, { exp: 'tomorrow' });
    assert.equal(badExp.json().code, 'bad_request');
    // Fastify's router refuses params over maxParamLength (100) before our schema sees them.
    const longSub = await post(`/v1/subjects/${'s'.repeat(300)}/revoke`, ADMIN);
    assert.ok(longSub.statusCode >= 400 && longSub.statusCode < 500);
    assert.equal(svc.isRevoked({ sub: 's'.repeat(300), iss: 'scopegate', scopes: [] }), false);
  });
});
