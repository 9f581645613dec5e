/**
 * approval_required with a hold: the proxy long-polls the PDP while a human decides, then
 * forwards (approved) or answers 403 (denied, or still pending when the hold runs out), with
 * the real PDP's approval API. Every refusal carries the approval id the agent can retry with.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { createHttpProxy } from '../../shims/http-proxy/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { startFakeRest, type FakeRest } from '../support/fake-rest.js';

let pdp: RunningPdp;
let rest: FakeRest;
let proxy: FastifyInstance;
let token: string;

before(async () => {
  pdp = await startPdp();
  rest = await startFakeRest();
  proxy = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [{ prefix: '/pay', resource: 'payments', kind: 'rest', upstream: rest.url }],
    approvalWaitS: 20,
  });
  await proxy.ready();
  token = await pdp.mint('agent-pay', ['http:payments:POST:/v1/contacts']);
});

after(async () => {
  await proxy?.close();
  await rest?.close();
  await pdp?.close();
});

/** Approve (or deny) the first pending approval as soon as it appears; bounded polling. */
async function settleNext(verdict: 'approve' | 'deny'): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const list = await pdp.app.inject({ method: 'GET', url: '/v1/approvals?status=pending', headers: { authorization: `Bearer ${pdp.approverKey}` } });
    const first = (list.json() as { items: Array<{ id: string }> }).items[0];
    if (first) {
      const res = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${first.id}/${verdict}`, headers: { authorization: `Bearer ${pdp.approverKey}`, 'content-type': 'application/json' }, payload: {} });
      assert.equal(res.statusCode, 200, res.body);
      return first.id;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no approval appeared');
}

const post = () =>
  proxy.inject({ method: 'POST', url: '/pay/v1/contacts', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: { amount: 10 } });

const approval = async (id: string) =>
  (await pdp.app.inject({ method: 'GET', url: `/v1/approvals/${id}`, headers: { authorization: `Bearer ${pdp.approverKey}` } })).json() as { status: string; uses: number };

test('an approved request is held, then forwarded; the single-use grant is consumed', async () => {
  const before = rest.seen.length;
  const [res, id] = await Promise.all([post(), settleNext('approve')]);
  assert.equal(res.statusCode, 201, res.body);
  assert.match(String(res.headers['x-scopegate-decision-id']), /^[0-9a-f-]{36}$/);
  assert.equal(rest.seen.length, before + 1);
  assert.equal(rest.seen.at(-1)!.body, '{"amount":10}');
  const after = await approval(id);
  assert.equal(after.status, 'consumed');
  assert.equal(after.uses, 1);
});

test('a denied approval answers 403 approval_denied and never reaches the upstream', async () => {
  const before = rest.seen.length;
  const [res, id] = await Promise.all([post(), settleNext('deny')]);
  assert.equal(res.statusCode, 403);
  assert.equal(res.json().code, 'approval_denied');
  assert.equal(res.json().approval_id, id);
  assert.ok(res.json().decision_id);
  assert.equal(rest.seen.length, before);
});

test('a hold that runs out answers 403 approval_required with the pending approval id', async () => {
  const short = createHttpProxy({
    pdp: { url: pdp.url, key: pdp.shimKey },
    routes: [{ prefix: '/pay', resource: 'payments', kind: 'rest', upstream: rest.url }],
    approvalWaitS: 1,
  });
  try {
    const before = rest.seen.length;
    const res = await short.inject({ method: 'POST', url: '/pay/v1/contacts', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: { amount: 11 } });
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(res.json().code, 'approval_required');
    const id = res.json().approval_id as string;
    assert.equal((await approval(id)).status, 'pending', 'nobody decided; the approval stays open for a retry');
    assert.equal(rest.seen.length, before);
    // Granting it later lets the agent's retry through once, without a new hold.
    const granted = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers: { authorization: `Bearer ${pdp.approverKey}`, 'content-type': 'application/json' }, payload: {} });
    assert.equal(granted.statusCode, 200, granted.body);
    const retry = await short.inject({ method: 'POST', url: '/pay/v1/contacts', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: { amount: 11 } });
    assert.equal(retry.statusCode, 201, retry.body);
    assert.equal(rest.seen.length, before + 1);
  } finally {
    await short.close();
  }
});
