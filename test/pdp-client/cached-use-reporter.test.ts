/**
 * Calls a shim answers from its local cache reach the PDP's decision log, and the cache is
 * switched off while they cannot be reported.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CachedDecisionReport, Decision } from '../../pdp-server/src/contract.js';
import { CachedUseReporter } from '../../shims/pdp-client/src/cached-use-reporter.js';
import { PdpClient } from '../../shims/pdp-client/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const ORDERS = { kind: 'sql', name: 'orders-db' } as const;
const select = { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }], fingerprint: 'fp-r' } };
const decision = (id: string): Decision => ({ decision_id: id, effect: 'allow', allow: true, reasons: [], obligations: {}, policy_revision: 'r1', ttl_ms: 1000 });
const req = (session: string, token = 't1') => ({ token, resource: ORDERS, request: select, context: { session_id: session } });

describe('CachedUseReporter', () => {
  it('counts reuses per decision and session, sends each token once, and keeps what failed', async () => {
    const sent: CachedDecisionReport[] = [];
    let accept = false;
    const r = new CachedUseReporter({ send: async (rep) => (sent.push(rep), accept), intervalMs: 60_000, maxPending: 3 });
    r.record(req('s1'), decision('d1'));
    r.record(req('s1'), decision('d1'));
    r.record(req('s2'), decision('d1'));
    assert.equal(r.healthy, true);
    r.record(req('s3', 't2'), decision('d2'));
    assert.equal(r.healthy, false, 'too many unreported uses: the cache must not be served');
    await r.flush();
    assert.equal(sent.length, 1);
    assert.deepEqual(sent[0]!.tokens, ['t1', 't2']);
    assert.deepEqual(sent[0]!.uses.map((u) => [u.token, u.decision_id, u.context?.session_id, u.count]), [[0, 'd1', 's1', 2], [0, 'd1', 's2', 1], [1, 'd2', 's3', 1]]);
    assert.equal(r.healthy, false, 'the report failed: still pending');
    r.record(req('s1'), decision('d1'));
    accept = true;
    await r.flush();
    assert.equal(sent.length, 2);
    assert.equal(sent[1]!.uses.find((u) => u.context?.session_id === 's1')?.count, 3, 'failed counts merge with new ones');
    assert.equal(r.healthy, true);
    await r.close();
    assert.equal(r.healthy, false, 'a closed reporter serves no cache');
  });

  it('turns unhealthy when the oldest unreported use waits too long', async () => {
    const r = new CachedUseReporter({ send: async () => false, intervalMs: 60_000, maxDelayMs: 0 });
    r.record(req('s1'), decision('d1'));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(r.healthy, false);
    await r.close();
  });
});

describe('PdpClient reports cached answers to the decision log', () => {
  let pdp: RunningPdp;
  before(async () => {
    pdp = await startPdp();
  });
  after(() => pdp.close());

  it('logs every call answered from its cache as decision.cached rows with the count', async () => {
    const client = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'test', reportIntervalMs: 50 });
    const token = await pdp.mint('agent-reported', ['sql:orders-db:select:public.orders']);
    const ask = () => client.decide({ token, resource: ORDERS, request: select, context: { session_id: 'reported-1' } });
    let firstId = '';
    try {
      for (let i = 0; i < 200 && !client.cacheLive; i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(client.cacheLive, 'the revocation feed connects');
      const first = await ask();
      assert.equal(first.effect, 'allow');
      firstId = first.decision_id;
      for (let i = 0; i < 5; i++) assert.equal((await ask()).decision_id, first.decision_id, 'answered from the local cache');
    } finally {
      await client.close(); // delivers what is pending
    }
    await pdp.app.decisionLog.flush();
    const res = await fetch(`${pdp.url}/v1/sessions/reported-1`, { headers: { authorization: `Bearer ${pdp.auditorKey}` } });
    const rows = ((await res.json()) as { items: Array<{ event: string; subject: string; request_summary: { cached_use?: { count: number; decision_id: string } } }> }).items;
    assert.deepEqual(rows.map((r) => r.event), ['decision', 'decision.cached']);
    const cached = rows[1]!;
    assert.equal(cached.subject, 'agent-reported');
    assert.equal(cached.request_summary.cached_use?.count, 5);
    assert.equal(cached.request_summary.cached_use?.decision_id, firstId);
  });
});
