/**
 * approval_required with a hold: the proxy long-polls the PDP while a human decides, then
 * forwards (approved) or answers 403 (denied), with the real PDP's approval API.
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
async function settleNext(verdict: 'approve' | 'deny'): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const list = await pdp.app.inject({ method: 'GET', url: '/v1/approvals?status=pending', headers: { authorization: `Bearer ${pdp.approverKey}` } });
    const first = (list.json() as { items: Array<{ id: string }> }).items[0];
    if (first) {
      const res = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${first.id}/${verdict}`, headers: { authorization: `Bearer ${pdp.approverKey}`, 'content-type': 'application/json' }, payload: {} });
      assert.equal(res.statusCode, 200, res.body);
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no approval appeared');
}

const post = () =>
  proxy.inject({ method: 'POST', url: '/pay/v1/contacts', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: { amount: 10 } });

test('an approved request is held, then forwarded', async () => {
  const before = rest.seen.length;
  const [res] = await Promise.all([post(), settleNext('approve')]);
  assert.equal(res.statusCode, 201, res.body);
  assert.equal(rest.seen.length, before + 1);
});

test('a denied approval answers 403 approval_denied and never reaches the upstream', async () => {
  const before = rest.seen.length;
  const [res] = await Promise.all([post(), settleNext('deny')]);
  assert.equal(res.statusCode, 403);
  assert.equal(res.json().code, 'approval_denied');
  assert.ok(res.json().approval_id);
  assert.equal(rest.seen.length, before);
});
