/**
 * Just-in-time approval through the whole PDP: the policy answers approval_required, the
 * approver grants it over REST, the exact same request from the same subject is then
 * allowed once; a different request is not, and a second try is held again.
 * Also: each management route refuses the wrong role, through the full app.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const PAYROLL = { kind: 'sql', name: 'orders-db' } as const;
/** One statement shape; `text` stands for its exact SQL text (literal values included). */
const update = (text: string) => ({
  sql: {
    statements: [{ command: 'update', relations: ['public.payroll'], columns: ['public.payroll.salary'], functions: [] }],
    fingerprint: 'shape-of-update-payroll',
    text_sha256: text,
  },
});

describe('approvals through /v1/decide', () => {
  let pdp: RunningPdp;
  let token: string;
  before(async () => {
    // A personal approver key named like the requesting subject: must never approve its own request.
    pdp = await startPdp({ listen: false, env: { SCOPEGATE_APPROVERS: 'payroll-bot:payroll-bot-approver-key-1,alice:alice-approver-key-0001' } });
    token = await pdp.mint('payroll-bot', ['sql:orders-db:update:public.payroll'], { chain: 'hr', step: 'raise' });
  });
  after(() => pdp.close());

  const decide = async (request: object, session = 'sess-approval') =>
    (
      await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}` },
        payload: { token, resource: PAYROLL, request, context: { session_id: session } },
      })
    ).json();
  const as = (key: string) => ({ authorization: `Bearer ${key}` });

  it('holds, is approved by an approver, runs once, and is held again', async () => {
    const first = await decide(update('stmt-a'));
    assert.equal(first.effect, 'approval_required');
    assert.equal(first.allow, false);
    const id: string = first.obligations.approval.id;
    assert.ok(id);

    const pending = await pdp.app.inject({ method: 'GET', url: '/v1/approvals?status=pending', headers: as(pdp.auditorKey) });
    assert.equal(pending.statusCode, 200);
    assert.ok(JSON.stringify(pending.json()).includes(id));

    // A shim (or the agent's side) cannot approve; an auditor cannot either.
    for (const key of [pdp.shimKey, pdp.auditorKey]) {
      const r = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers: as(key), payload: {} });
      assert.equal(r.statusCode, 403);
    }
    const self = await pdp.app.inject({
      method: 'POST',
      url: `/v1/approvals/${id}/approve`,
      headers: as('payroll-bot-approver-key-1'),
      payload: {},
    });
    assert.equal(self.statusCode, 403);
    assert.equal(self.json().code, 'approval_self_decision');
    const ok = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers: as('alice-approver-key-0001'), payload: {} });
    assert.equal(ok.statusCode, 200, ok.body);
    const decided = await pdp.app.inject({ method: 'GET', url: `/v1/approvals/${id}`, headers: as(pdp.approverKey) });
    assert.match(decided.body, /alice/);

    // A different statement — even of the same shape, e.g. other literal values — is not covered.
    assert.equal((await decide(update('stmt-b'))).effect, 'approval_required');
    const second = await decide(update('stmt-a'));
    assert.equal(second.effect, 'allow');
    assert.equal(second.allow, true);
    const third = await decide(update('stmt-a'));
    assert.equal(third.effect, 'approval_required', 'a once-approval is used up');
  });

  it('a denied approval allows nothing', async () => {
    const held = await decide(update('stmt-c'));
    const id: string = held.obligations.approval.id;
    const no = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${id}/deny`, headers: as(pdp.approverKey), payload: {} });
    assert.equal(no.statusCode, 200, no.body);
    assert.notEqual((await decide(update('stmt-c'))).effect, 'allow');
  });

  it('the session timeline shows the decisions and approval events in order', async () => {
    await pdp.app.decisionLog.flush();
    const res = await pdp.app.inject({ method: 'GET', url: '/v1/sessions/sess-approval', headers: as(pdp.auditorKey) });
    assert.equal(res.statusCode, 200, res.body);
    const text = JSON.stringify(res.json());
    assert.match(text, /approval_required/);
    assert.match(text, /"allow"/);
  });

  it('each management route refuses the wrong role', async () => {
    const routes: [string, string, string[]][] = [
      ['GET', '/v1/decisions', ['shim', 'approver']],
      ['GET', '/v1/revocations', ['shim', 'auditor', 'approver']],
      ['POST', '/v1/tokens', ['shim', 'auditor', 'approver']],
      ['GET', '/v1/approvals?status=pending', ['shim']],
    ];
    const keys: Record<string, string> = { shim: pdp.shimKey, auditor: pdp.auditorKey, approver: pdp.approverKey };
    for (const [method, url, wrong] of routes) {
      const anon = await pdp.app.inject({ method: method as 'GET', url });
      assert.equal(anon.statusCode, 401, `${method} ${url} without a credential`);
      for (const role of wrong) {
        const r = await pdp.app.inject({ method: method as 'GET', url, headers: as(keys[role]!), ...(method === 'POST' ? { payload: { sub: 'x', scopes: ['a:b:c'] } } : {}) });
        assert.equal(r.statusCode, 403, `${method} ${url} as ${role}`);
        assert.equal(r.json().code, 'forbidden');
      }
    }
  });
});
