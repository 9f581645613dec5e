/**
 * OPA Data API compatibility, proven with the official OPA TypeScript SDK as the client
 * against a listening PDP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OPAClient } from '@open-policy-agent/opa';
import { startPdp, type RunningPdp } from '../support/pdp.js';

describe('OPA Data API (POST /v1/data/{path})', () => {
  let pdp: RunningPdp;
  let opa: OPAClient;
  let token: string;

  before(async () => {
    pdp = await startPdp();
    opa = new OPAClient(pdp.url, { headers: { authorization: `Bearer ${pdp.shimKey}` } });
    token = await pdp.mint('agent-1', ['http:crm:GET:/v1/contacts/*']);
  });
  after(() => pdp.close());

  const crm = (method: string, p: string) => ({
    token,
    resource: { kind: 'http', name: 'crm' },
    request: { http: { method, path: p } },
  });

  it('evaluates the decision entrypoint through the full pipeline', async () => {
    const allow = await opa.evaluate<ReturnType<typeof crm>, { effect: string; allow: boolean; policy_revision: string }>(
      'scopegate/main/decision',
      crm('GET', '/v1/contacts/42'),
    );
    assert.equal(allow.effect, 'allow');
    assert.equal(allow.allow, true);
    assert.equal(allow.policy_revision, pdp.app.policy.active!.revision);
    const deny = await opa.evaluate<ReturnType<typeof crm>, { effect: string }>('scopegate/main/decision', crm('DELETE', '/v1/contacts/42'));
    assert.notEqual(deny.effect, 'allow');
  });

  it('answers with a decision_id like OPA', async () => {
    const res = await fetch(`${pdp.url}/v1/data/scopegate/main/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pdp.shimKey}` },
      body: JSON.stringify({ input: crm('GET', '/v1/contacts/1') }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { result: { decision_id: string }; decision_id: string };
    assert.equal(body.decision_id, body.result.decision_id);
  });

  it('never trusts a subject supplied in the input', async () => {
    const forged = { ...crm('GET', '/v1/contacts/1'), token: 'garbage', subject: { sub: 'root', scopes: ['*'] } };
    const res = await fetch(`${pdp.url}/v1/data/scopegate/main/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pdp.shimKey}` },
      body: JSON.stringify({ input: forged }),
    });
    // `subject` is not part of a decide request: refused as malformed, not evaluated.
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: string }).code, 'bad_request');
  });

  it('an undefined path gives no result (OPA semantics), and the SDK sees undefined', async () => {
    const res = await fetch(`${pdp.url}/v1/data/no/such/rule`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${pdp.shimKey}` },
      body: JSON.stringify({ input: {} }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.result, undefined);
    assert.equal(typeof body.decision_id, 'string');
  });

  it('requires the shim credential', async () => {
    const anon = new OPAClient(pdp.url);
    await assert.rejects(anon.evaluate('scopegate/main/decision', crm('GET', '/v1/contacts/1')));
  });
});
