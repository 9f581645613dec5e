/**
 * `POST /v1/decisions/cached`: what shims answered from their local cache reaches the decision
 * log as `decision.cached` rows — one per reused decision and session, with the count.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CachedDecisionReport } from '../../pdp-server/src/contract.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const ORDERS = { kind: 'sql', name: 'orders-db' } as const;
const select = { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }], fingerprint: 'f1' } };

interface Row {
  event: string;
  effect: string;
  code: string | null;
  cache_hit: boolean;
  subject: string | null;
  session_id: string | null;
  shim: string | null;
  request_summary: { cached_use?: { decision_id: string; count: number } };
}

describe('cached decision reports', () => {
  let pdp: RunningPdp;
  before(async () => {
    pdp = await startPdp({ listen: false });
  });
  after(() => pdp.close());

  const report = (body: unknown, key = pdp.shimKey) =>
    pdp.app.inject({ method: 'POST', url: '/v1/decisions/cached', headers: { authorization: `Bearer ${key}` }, payload: body as object });

  async function rowsOf(session: string): Promise<Row[]> {
    await pdp.app.decisionLog.flush();
    const res = await pdp.app.inject({ method: 'GET', url: `/v1/sessions/${session}`, headers: { authorization: `Bearer ${pdp.auditorKey}` } });
    assert.equal(res.statusCode, 200, res.body);
    return (res.json() as { items: Row[] }).items;
  }

  const use = (token: number, session: string, count: number) => ({
    token,
    decision_id: '0190c0de-0000-7000-8000-000000000001',
    policy_revision: 'rev-x',
    resource: ORDERS,
    request: select,
    context: { session_id: session, shim: 'pg-proxy' },
    count,
    first_ms: Date.now() - 1000,
    last_ms: Date.now(),
  });

  it('logs one row per reused decision and session, naming the verified subject and the count', async () => {
    const token = await pdp.mint('agent-cache', ['sql:orders-db:select:public.orders']);
    const body: CachedDecisionReport = { tokens: [token], uses: [use(0, 'cache-s1', 42), use(0, 'cache-s2', 1)] };
    const res = await report(body);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { logged: 2 });
    const [row] = await rowsOf('cache-s1');
    assert.ok(row);
    assert.equal(row.event, 'decision.cached');
    assert.equal(row.effect, 'allow');
    assert.equal(row.cache_hit, true);
    assert.equal(row.subject, 'agent-cache');
    assert.equal(row.shim, 'pg-proxy');
    assert.equal(row.code, null);
    assert.equal(row.request_summary.cached_use?.count, 42);
    assert.equal(row.request_summary.cached_use?.decision_id, '0190c0de-0000-7000-8000-000000000001');
    assert.equal((await rowsOf('cache-s2')).length, 1);
  });

  it('still logs uses of a token that no longer verifies, with the reason', async () => {
    const res = await report({ tokens: ['not.a.jwt'], uses: [use(0, 'cache-bad', 3), use(5, 'cache-missing', 1)] });
    assert.equal(res.statusCode, 200, res.body);
    const [bad] = await rowsOf('cache-bad');
    assert.equal(bad?.subject, null);
    assert.match(String(bad?.code), /^token_/);
    const [missing] = await rowsOf('cache-missing');
    assert.equal(missing?.code, 'token_missing');
  });

  it('is refused without the shim (or admin) credential and for malformed reports', async () => {
    assert.equal((await report({ tokens: [], uses: [] }, pdp.auditorKey)).statusCode, 403);
    assert.equal((await report({ tokens: [], uses: [] }, 'wrong')).statusCode, 401);
    const bad = await report({ tokens: [], uses: [{ ...use(0, 's', 1), count: 0 }] });
    assert.equal(bad.statusCode, 400);
    assert.equal((bad.json() as { code: string }).code, 'bad_request');
    assert.equal((await report({ tokens: [], uses: [{ ...use(0, 's', 1), extra: true }] })).statusCode, 400);
  });
});
