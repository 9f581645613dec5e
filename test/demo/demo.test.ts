/**
 * The demo (`npm run demo`) end to end against the real Postgres (the demo database and the
 * PDP's log live in a throwaway database on it): every step's outcome and the session
 * timeline read back from the audit API.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runDemo, type DemoResult } from '../../demo/demo.js';
import type { AgentEvent } from '../../demo/support-agent.js';
import { TEST_DATABASE_URL } from '../support/pdp.js';

const of = <K extends AgentEvent['kind']>(r: DemoResult, step: string, kind: K) =>
  r.events.filter((e): e is Extract<AgentEvent, { kind: K }> => e.step === step && e.kind === kind);

test('npm run demo: every step ends as the policy says, and the session timeline shows it', { timeout: 120_000 }, async () => {
  const r = await runDemo({ databaseUrl: TEST_DATABASE_URL, approvalWaitS: 2 });
  assert.equal(r.database, 'postgres');
  assertDemo(r);
});

// The fresh-machine path of `npm run demo`: no DATABASE_URL, so the demo database is embedded
// PGlite served over the wire protocol and the PDP logs to its own PGlite.
test('npm run demo on embedded PGlite gives the same outcomes', { timeout: 240_000 }, async () => {
  const r = await runDemo({ approvalWaitS: 2 });
  assert.equal(r.database, 'pglite');
  assertDemo(r);
});

function assertDemo(r: DemoResult): void {
  // 1. lookup through pg-proxy: rows come back, the SSN column masked.
  const [lookup] = of(r, 'lookup', 'tool_result');
  assert.ok(lookup);
  const rows = JSON.parse(lookup.text) as Array<Record<string, unknown>>;
  assert.equal(rows.length, 2);
  for (const row of rows) {
    assert.equal(row.name, 'Ada Lovelace');
    assert.notEqual(row.ssn, '123-45-6789');
    assert.match(String(row.ssn), /REDACTED/);
  }
  assert.ok(!lookup.text.includes('123-45-6789'));

  // 2. CRM through http-proxy: GET allowed (email masked), DELETE denied and never reached the CRM.
  const [get, del] = of(r, 'crm', 'tool_result');
  assert.ok(get && del);
  assert.equal((JSON.parse(get.text) as { name: string }).name, 'Ada Lovelace');
  assert.ok(!get.text.includes('ada@example.com'));
  assert.match(del.text, /^REFUSED by scopegate \(http-proxy\): denied/);
  assert.deepEqual(r.crmHits, ['GET /v1/contacts/1']);

  // 3. UPDATE payroll: held, approved over REST, runs once; the second try is held again.
  const held = of(r, 'payroll', 'held');
  assert.equal(held.length, 2);
  assert.notEqual(held[0]?.approvalId, held[1]?.approvalId);
  assert.deepEqual(r.approvals.map((a) => a.action), ['approved', 'left_pending']);
  const [first, second] = of(r, 'payroll', 'tool_result');
  assert.equal(first?.text, 'Updated 1 payroll row(s).');
  assert.match(second?.text ?? '', /^HELD by scopegate: .*approval/);
  assert.equal(r.payroll?.bonus, '500.00');

  // 4. Prompt injection: the http-proxy refuses it; the model never sees it.
  const [refused] = of(r, 'injection', 'model_refused');
  assert.equal(refused?.status, 403);
  assert.equal(of(r, 'injection', 'answer').length, 0);

  // Every tool call was decided by the SDK (guardTool) with the step in context.
  const guards = r.events.filter((e) => e.kind === 'guard');
  assert.equal(guards.length, 5);
  assert.ok(guards.every((g) => g.kind === 'guard' && g.outcome === 'allowed'));

  // The session timeline, from GET /v1/sessions/:id.
  const t = r.timeline;
  const find = (pred: (i: (typeof t)[number]) => boolean) => t.filter(pred);
  assert.ok(t.every((i) => i.chain === 'support-bot' || i.event !== 'decision'), 'decisions carry the chain');
  const sdk = find((i) => i.shim === 'sdk');
  // (The repeated, identical set_bonus call may be answered from the SDK's local allow cache.)
  assert.deepEqual(
    [...new Set(sdk.map((i) => `${i.step} ${i.resource_name} ${i.effect}`))],
    ['lookup lookup_orders allow', 'crm crm_get_contact allow', 'crm crm_delete_contact allow', 'payroll set_bonus allow'],
  );
  assert.ok(find((i) => i.shim === 'pg-proxy' && i.step === 'lookup' && i.effect === 'allow' && i.reasons.includes('scope sql:orders-db:select:public.customers')).length >= 1);
  assert.equal(find((i) => i.shim === 'http-proxy' && i.resource_name === 'crm' && i.effect === 'allow').length, 1);
  assert.deepEqual(
    find((i) => i.shim === 'http-proxy' && i.resource_name === 'crm' && i.effect === 'deny').map((i) => i.reasons),
    [['no_scope http:crm:DELETE:/v1/contacts/1']],
  );
  const approvalEvents = find((i) => i.event.startsWith('approval.')).map((i) => i.event);
  assert.deepEqual(approvalEvents, ['approval.requested', 'approval.approved', 'approval.consumed', 'approval.requested']);
  assert.equal(find((i) => i.shim === 'pg-proxy' && i.effect === 'approval_required').length, 2);
  assert.ok(find((i) => i.shim === 'pg-proxy' && i.effect === 'allow' && i.reasons.some((x) => x.startsWith('approved '))).length === 1);
  const injection = find((i) => i.step === 'injection');
  assert.deepEqual(injection.map((i) => [i.shim, i.resource_kind, i.effect, i.reasons]), [['http-proxy', 'llm', 'deny', ['prompt_injection']]]);
  // Time order.
  const times = t.map((i) => Date.parse(i.time));
  assert.deepEqual([...times].sort((a, b) => a - b), times);
}
