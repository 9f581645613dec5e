import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createDecisionLog, type DecisionLogWriter } from '../../pdp-server/src/audit/decision-log.js';
import { createApprovalService, type ApprovalService, type ResolveRequest } from '../../pdp-server/src/approvals/approval-service.js';
import { BACKENDS, openTestDb, silentLog, tempDir, testConfig, type TestDb } from '../audit/test-backends.js';
import { auth, buildAuditApp, KEY_ENV, type RoleName } from '../audit/test-app.js';

const SECRET = 'webhook-secret-for-tests';

/** A tiny webhook receiver: answers 500 to the first delivery, 200 afterwards. */
async function startReceiver() {
  const received: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
  let calls = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      calls += 1;
      received.push({ headers: req.headers, body });
      res.statusCode = calls === 1 ? 500 : 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

function request(over: Partial<ResolveRequest> = {}): ResolveRequest {
  return {
    subject: 'agent-7',
    fingerprint: 'fp-delete-orders',
    reasons: ['high-risk action sql:orders-db:delete'],
    resource: { kind: 'sql', name: 'orders-db' },
    summary: { sql: { statements: [{ command: 'delete', relations: ['public.orders'] }] } },
    decision_id: randomUUID(),
    context: { session_id: 'sess-approvals', chain: 'ops-bot', step: 'cleanup' },
    ...over,
  };
}

const approver = { role: 'approver', name: 'approver' };

for (const backend of BACKENDS) {
  describe(`approvals (${backend})`, () => {
    let t: TestDb;
    let svc: ApprovalService;
    let dlog: DecisionLogWriter;
    let app: FastifyInstance;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    let cleanupDir: () => Promise<void>;

    before(async () => {
      t = await openTestDb(backend);
      receiver = await startReceiver();
      const tmp = await tempDir('sg-approvals-');
      cleanupDir = tmp.cleanup;
      const config = testConfig(tmp.dir, {
        ...KEY_ENV,
        SCOPEGATE_APPROVAL_WEBHOOK_URL: receiver.url,
        SCOPEGATE_APPROVAL_WEBHOOK_SECRET: SECRET,
        SCOPEGATE_APPROVAL_TTL_S: '600',
      });
      dlog = await createDecisionLog(t.db, config, silentLog);
      svc = await createApprovalService(t.db, config, silentLog, dlog, { pollMs: 20, webhookInitialDelayMs: 20 });
      app = await buildAuditApp(config, { db: t.db, approvals: svc });
    });
    after(async () => {
      await app.close();
      await svc.close();
      await dlog.close();
      await receiver.close();
      await t.cleanup();
      await cleanupDir();
    });

    it('records one pending request per subject and fingerprint', async () => {
      const a = await svc.resolve(request());
      assert.equal(a.effect, 'approval_required');
      assert.equal(a.approval.status, 'pending');
      const again = await svc.resolve(request());
      assert.equal(again.approval.id, a.approval.id);
      const other = await svc.resolve(request({ fingerprint: 'fp-other' }));
      assert.notEqual(other.approval.id, a.approval.id);
      const stored = await svc.get(a.approval.id);
      assert.equal(stored?.subject, 'agent-7');
      assert.deepEqual(stored?.reasons, ['high-risk action sql:orders-db:delete']);
      assert.equal(stored?.session_id, 'sess-approvals');
    });

    it('allows the approved request once, for that subject and fingerprint only', async () => {
      const fp = `fp-${randomUUID()}`;
      const { approval } = await svc.resolve(request({ fingerprint: fp }));
      await assert.rejects(svc.decide(approval.id, 'approve', { role: 'approver', name: 'agent-7' }), { code: 'approval_self_decision' });
      const decided = await svc.decide(approval.id, 'approve', approver, 'ok for today');
      assert.equal(decided.status, 'approved');
      await assert.rejects(svc.decide(approval.id, 'deny', approver), { code: 'approval_not_pending' });

      assert.equal((await svc.resolve(request({ fingerprint: `${fp}-changed` }))).effect, 'approval_required');
      assert.equal((await svc.resolve(request({ fingerprint: fp, subject: 'agent-8' }))).effect, 'approval_required');
      // Concurrent retries: exactly one consumes the single-use grant.
      const results = await Promise.all(Array.from({ length: 5 }, () => svc.resolve(request({ fingerprint: fp }))));
      assert.equal(results.filter((r) => r.effect === 'allow').length, 1);
      assert.equal(results.find((r) => r.effect === 'allow')?.approval.id, approval.id);
      assert.equal((await svc.get(approval.id))?.status, 'consumed');
      assert.equal((await svc.resolve(request({ fingerprint: fp }))).effect, 'approval_required');
    });

    it('allows repeatedly within a window grant', async () => {
      const fp = `fp-${randomUUID()}`;
      const { approval } = await svc.resolve(request({ fingerprint: fp, mode: 'window', window_s: 300 }));
      await svc.decide(approval.id, 'approve', approver);
      for (let i = 0; i < 3; i++) assert.equal((await svc.resolve(request({ fingerprint: fp }))).effect, 'allow');
      assert.equal((await svc.get(approval.id))?.uses, 3);
    });

    it('a denied or expired approval allows nothing', async () => {
      const fpDenied = `fp-${randomUUID()}`;
      const denied = await svc.resolve(request({ fingerprint: fpDenied }));
      await svc.decide(denied.approval.id, 'deny', approver, 'no');
      const after = await svc.resolve(request({ fingerprint: fpDenied }));
      assert.equal(after.effect, 'approval_required');
      assert.notEqual(after.approval.id, denied.approval.id);

      const fpExpired = `fp-${randomUUID()}`;
      const pending = await svc.resolve(request({ fingerprint: fpExpired }));
      await t.db.query("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [pending.approval.id]);
      await assert.rejects(svc.decide(pending.approval.id, 'approve', approver), { code: 'approval_expired' });
      assert.equal((await svc.get(pending.approval.id))?.status, 'expired');

      const fpLapsed = `fp-${randomUUID()}`;
      const granted = await svc.resolve(request({ fingerprint: fpLapsed }));
      await svc.decide(granted.approval.id, 'approve', approver);
      await t.db.query("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [granted.approval.id]);
      const lapsed = await svc.resolve(request({ fingerprint: fpLapsed }));
      assert.equal(lapsed.effect, 'approval_required');
      assert.notEqual(lapsed.approval.id, granted.approval.id);
    });

    it('long-polls until the approval is decided', async () => {
      const { approval } = await svc.resolve(request({ fingerprint: `fp-${randomUUID()}` }));
      const waiting = app.inject({ url: `/v1/approvals/${approval.id}?wait=30`, headers: auth('shim') });
      const listed = await app.inject({ url: '/v1/approvals?status=pending', headers: auth('approver') });
      assert.ok((listed.json().items as Array<{ id: string }>).some((a) => a.id === approval.id));
      const res = await app.inject({ method: 'POST', url: `/v1/approvals/${approval.id}/approve`, headers: auth('approver'), payload: { note: 'go' } });
      assert.equal(res.statusCode, 200, res.body);
      const polled = await waiting;
      assert.equal(polled.statusCode, 200);
      assert.equal(polled.json().status, 'approved');
      assert.equal(polled.json().decided_by, 'approver');
      const noWait = await app.inject({ url: `/v1/approvals/${approval.id}`, headers: auth('admin') });
      assert.equal(noWait.json().note, 'go');
      const missing = await app.inject({ url: `/v1/approvals/${randomUUID()}`, headers: auth('shim') });
      assert.equal(missing.json().code, 'not_found');
    });

    it('writes every approval event to the decision log', async () => {
      const { approval } = await svc.resolve(request({ fingerprint: `fp-${randomUUID()}` }));
      await svc.decide(approval.id, 'approve', approver);
      const used = await svc.resolve(request({ fingerprint: (await svc.get(approval.id))!.fingerprint }));
      assert.equal(used.effect, 'allow');
      await dlog.flush();
      const r = await t.db.query<{ event: string; effect: string; session_id: string }>(
        'SELECT event, effect, session_id FROM decision_log WHERE approval_id = $1 ORDER BY time, event',
        [approval.id],
      );
      assert.deepEqual(r.rows.map((x) => x.event).sort(), ['approval.approved', 'approval.consumed', 'approval.requested']);
      assert.ok(r.rows.every((x) => x.session_id === 'sess-approvals'));
    });

    it('sends signed webhooks and retries a failed delivery', async () => {
      // Deliveries are asynchronous: wait (bounded) until the retried first one has arrived.
      const retried = () => receiver.received.slice(1).some((r) => r.body === receiver.received[0]!.body);
      for (let i = 0; i < 200 && !retried(); i++) await new Promise((r) => setTimeout(r, 25));
      // The receiver failed the first delivery (500): the same signed body arrives again.
      assert.ok(retried(), 'the failed delivery was retried with the same body');
      for (const { headers, body } of receiver.received) {
        const expected = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        assert.equal(headers['x-scopegate-signature'], expected);
        const parsed = JSON.parse(body) as { type: string; sent_at: string; approval: { id: string } };
        assert.equal(headers['x-scopegate-timestamp'], String(Math.floor(Date.parse(parsed.sent_at) / 1000)));
        assert.match(parsed.type, /^approval\./);
      }
    });

    it('refuses the wrong role on every approval route', async () => {
      const { approval } = await svc.resolve(request({ fingerprint: `fp-${randomUUID()}` }));
      const cases: Array<{ method: 'GET' | 'POST'; url: string; ok: RoleName[] }> = [
        { method: 'GET', url: '/v1/approvals?status=pending', ok: ['auditor', 'admin', 'approver'] },
        { method: 'GET', url: `/v1/approvals/${approval.id}`, ok: ['shim', 'admin', 'approver'] },
        { method: 'POST', url: `/v1/approvals/${approval.id}/deny`, ok: [] },
        { method: 'POST', url: `/v1/approvals/${approval.id}/approve`, ok: [] },
      ];
      for (const c of cases) {
        const anon = await app.inject({ method: c.method, url: c.url });
        assert.equal(anon.json().code, 'unauthenticated', c.url);
        for (const role of ['admin', 'auditor', 'approver', 'shim'] as RoleName[]) {
          if (c.method === 'POST' && role === 'approver') continue;
          const res = await app.inject({ method: c.method, url: c.url, headers: auth(role) });
          if (c.ok.includes(role)) assert.equal(res.statusCode, 200, `${role} ${c.url}`);
          else assert.equal(res.json().code, 'forbidden', `${role} ${c.url}`);
        }
      }
      const deny = await app.inject({ method: 'POST', url: `/v1/approvals/${approval.id}/deny`, headers: auth('approver') });
      assert.equal(deny.json().status, 'denied');
    });
  });
}
