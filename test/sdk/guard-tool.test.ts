/**
 * guardTool with real LangChain.js tools (`tool()`, DynamicTool, a StructuredTool
 * subclass) against the real PDP and the default policy: allow, deny, approvals (waited
 * for and refused), fail closed, context from the callback handler.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DynamicTool, StructuredTool, tool } from '@langchain/core/tools';
import { RunnableLambda } from '@langchain/core/runnables';
import { convertToOpenAITool } from '@langchain/core/utils/function_calling';
import { z } from 'zod';
import { guardTool, PdpClient, ScopegateCallbackHandler, ToolRefusedError, type GuardEvent } from '../../shims/sdk/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

let pdp: RunningPdp;
let client: PdpClient;

before(async () => {
  pdp = await startPdp();
  client = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'sdk' });
});
after(async () => {
  await client.close();
  await pdp.close();
});

/** Decisions the PDP logged for a session (the log writes in small batches: poll, bounded). */
async function logged(sessionId: string, atLeast: number): Promise<Array<Record<string, unknown>>> {
  let items: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 40 && items.length < atLeast; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const res = await pdp.app.inject({ method: 'GET', url: `/v1/decisions?session_id=${sessionId}&order=asc`, headers: { authorization: `Bearer ${pdp.auditorKey}` } });
    items = (res.json() as { items: Array<Record<string, unknown>> }).items;
  }
  return items;
}

function lookupTool(calls: unknown[]) {
  return tool(
    async ({ id }) => {
      calls.push(id);
      return JSON.stringify({ id, name: 'Ada', email: 'ada@example.com' });
    },
    { name: 'lookup', description: 'Look a customer up.', schema: z.object({ id: z.number() }) },
  );
}

test('tool(): allowed calls run with their arguments decided; the model-facing tool is unchanged', async () => {
  const calls: unknown[] = [];
  const raw = lookupTool(calls);
  const events: GuardEvent[] = [];
  const guarded = guardTool(raw, { pdp: client, token: await pdp.mint('agent', ['tool:lookup:call']), onDecision: (e) => events.push(e) });
  assert.ok(guarded instanceof raw.constructor);
  assert.deepEqual(convertToOpenAITool(guarded), convertToOpenAITool(raw));
  const msg = await guarded.invoke({ id: 'call_1', name: 'lookup', args: { id: 7 }, type: 'tool_call' });
  assert.equal(msg.tool_call_id, 'call_1');
  assert.deepEqual(calls, [7]);
  assert.match(String(msg.content), /"name":"Ada"/);
  assert.equal(events[0]?.outcome, 'allowed');
  assert.deepEqual(events[0]?.decision.reasons, ['scope tool:lookup:call']);
});

test('denied: the tool does not run and the model reads a clear refusal', async () => {
  const calls: unknown[] = [];
  const guarded = guardTool(lookupTool(calls), { pdp: client, token: await pdp.mint('agent', ['tool:other:call']) });
  const out = await guarded.invoke({ id: 1 });
  assert.deepEqual(calls, []);
  assert.match(String(out), /^REFUSED by scopegate: the tool "lookup" was not run because the policy denied it \(no_scope tool:lookup:call; decision [\w-]+\)/);
});

test('DynamicTool and a StructuredTool subclass are guarded alike; a disabled tool is refused', async () => {
  const seen: string[] = [];
  const echo = new DynamicTool({ name: 'echo', description: 'Echo.', func: async (s: string) => (seen.push(s), `echo ${s}`) });
  class DeleteRepo extends StructuredTool {
    name = 'delete-repo';
    description = 'Delete a repository.';
    schema = z.object({ repo: z.string() });
    async _call({ repo }: { repo: string }): Promise<string> {
      seen.push(`deleted ${repo}`);
      return 'deleted';
    }
  }
  const token = await pdp.mint('agent', ['tool:echo:call', 'tool:delete-repo:call']);
  const gEcho = guardTool(echo, { pdp: client, token });
  assert.ok(gEcho instanceof DynamicTool);
  assert.equal(await gEcho.invoke('hi'), 'echo hi');
  const gDelete = guardTool(new DeleteRepo(), { pdp: client, token, onRefusal: 'throw' });
  assert.ok(gDelete instanceof DeleteRepo);
  await assert.rejects(gDelete.invoke({ repo: 'x' }), (err: unknown) => {
    assert.ok(err instanceof ToolRefusedError);
    assert.equal(err.outcome, 'denied');
    assert.match(err.message, /tool_disabled delete-repo/);
    return true;
  });
  assert.deepEqual(seen, ['hi']);
});

test('approval_required: refused at once with the approval id, or held until a human approves', async () => {
  const sent: string[] = [];
  const sendEmail = tool(async ({ to }) => (sent.push(to), `sent to ${to}`), {
    name: 'send-email',
    description: 'Send an email.',
    schema: z.object({ to: z.string() }),
  });
  const token = await pdp.mint('mailer', ['tool:send-email:call']);
  const events: GuardEvent[] = [];
  const refuse = guardTool(sendEmail, { pdp: client, token, onDecision: (e) => events.push(e) });
  const out = String(await refuse.invoke({ to: 'a@example.com' }));
  assert.match(out, /needs a human approval \(approval [\w-]+/);
  assert.deepEqual(sent, []);
  assert.equal(events[0]?.outcome, 'approval_pending');

  const wait = guardTool(sendEmail, { pdp: client, token, approvalWaitS: 10 });
  const running = wait.invoke({ to: 'b@example.com' });
  // The human: find the pending request for b@ over the REST API and approve it (bounded poll).
  let approved = false;
  for (let i = 0; i < 50 && !approved; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const res = await pdp.app.inject({ method: 'GET', url: '/v1/approvals?status=pending', headers: { authorization: `Bearer ${pdp.approverKey}` } });
    const items = (res.json() as { items: Array<{ id: string; resource: { name: string } }> }).items;
    // Not the request refused above (still pending): the one the waiting call created.
    const mine = items.find((a) => a.resource.name === 'send-email' && a.id !== events[0]?.approvalId);
    if (mine) {
      const ok = await pdp.app.inject({ method: 'POST', url: `/v1/approvals/${mine.id}/approve`, headers: { authorization: `Bearer ${pdp.approverKey}` }, payload: {} });
      assert.equal(ok.statusCode, 200);
      approved = true;
    }
  }
  assert.ok(approved, 'the held call created a pending approval');
  assert.equal(await running, 'sent to b@example.com');
  assert.deepEqual(sent, ['b@example.com']);
  // Single use: the same call needs a new approval.
  assert.match(String(await refuse.invoke({ to: 'b@example.com' })), /needs a human approval/);
  assert.deepEqual(sent, ['b@example.com']);
});

test('fail closed: an unreachable PDP or a token that cannot be had refuses the call', async () => {
  const calls: unknown[] = [];
  const dead = new PdpClient({ url: 'http://127.0.0.1:9', key: pdp.shimKey, shim: 'sdk', timeoutMs: 500 });
  try {
    const g1 = guardTool(lookupTool(calls), { pdp: dead, token: await pdp.mint('agent', ['tool:lookup:call']) });
    assert.match(String(await g1.invoke({ id: 1 })), /REFUSED by scopegate.*pdp unreachable/);
  } finally {
    await dead.close();
  }
  const g2 = guardTool(lookupTool(calls), {
    pdp: client,
    token: () => {
      throw new Error('minting service down');
    },
  });
  assert.match(String(await g2.invoke({ id: 1 })), /REFUSED by scopegate.*minting service down/);
  assert.deepEqual(calls, []);
});

test('the callback handler carries session, chain, step and run id into the decision', async () => {
  const handler = new ScopegateCallbackHandler({ chain: 'support-bot' });
  const contexts: Array<Record<string, unknown>> = [];
  const token = await pdp.mint('agent', ['tool:lookup:call']);
  const guarded = guardTool(lookupTool([]), { pdp: client, token, onDecision: (e) => contexts.push({ ...e.context }) });
  // A chain run names the step in its metadata; the tool runs inside it and inherits it.
  const chain = RunnableLambda.from(async (id: number, config) => guarded.invoke({ id }, config));
  await chain.invoke(3, { callbacks: [handler], metadata: { scopegate_step: 'lookup' } });
  assert.equal(contexts[0]?.session_id, handler.sessionId);
  assert.equal(contexts[0]?.chain, 'support-bot');
  assert.equal(contexts[0]?.step, 'lookup');
  assert.match(String(contexts[0]?.run_id), /^[0-9a-f-]{36}$/);
  const [row] = await logged(handler.sessionId, 1);
  assert.equal(row?.shim, 'sdk');
  assert.equal(row?.step, 'lookup');
  assert.equal(row?.chain, 'support-bot');
  assert.equal(row?.resource_name, 'lookup');
});
