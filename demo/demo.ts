/**
 * The end-to-end demo as a function: start the stack, run the scripted agent through every
 * step, play the human approver, then read the session's timeline from the audit API.
 * `main.ts` prints it; test/demo runs it and asserts on what it returns.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { PdpClient, ScopegateCallbackHandler, pdpTokenMinter, stepTokens } from '../shims/sdk/src/index.js';
import { DEMO_STEPS } from './demo-script.js';
import { startDemoStack, type DemoStack } from './demo-stack.js';
import { createSupportAgent, type AgentEvent } from './support-agent.js';

export const DEMO_CHAIN = 'support-bot';

export interface TimelineItem {
  decision_id: string;
  time: string;
  event: string;
  shim: string | null;
  step: string | null;
  chain: string | null;
  resource_kind: string;
  resource_name: string;
  effect: string;
  reasons: string[];
  code: string | null;
  approval_id: string | null;
}

export type DemoOutput =
  | { kind: 'banner'; text: string }
  | { kind: 'step'; index: number; step: string; title: string }
  | { kind: 'agent'; event: AgentEvent }
  | { kind: 'approver'; action: 'approved' | 'left_pending'; approvalId: string; summary: string }
  | { kind: 'timeline'; items: TimelineItem[] };

export interface DemoResult {
  sessionId: string;
  database: DemoStack['database'];
  events: AgentEvent[];
  approvals: Array<{ approvalId: string; action: 'approved' | 'left_pending' }>;
  timeline: TimelineItem[];
  /** Requests that reached the CRM (the denied DELETE must not be among them). */
  crmHits: string[];
  /** Chat-completion calls that reached the model (the injected prompt must not). */
  modelCalls: number;
  /** payroll row of employee 7 after the run, read directly. */
  payroll: Record<string, unknown> | undefined;
}

export interface DemoOptions {
  databaseUrl?: string | undefined;
  /** Seconds a held statement waits for the approver. Default 2 (the second try is left pending). */
  approvalWaitS?: number;
  out?: (o: DemoOutput) => void;
}

async function api<T>(method: 'GET' | 'POST', url: string, key: string, body?: unknown): Promise<T> {
  const res = await request(url, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${new URL(url).pathname} → HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

/** The session timeline, once the decision log has caught up (it writes in small batches). */
async function readTimeline(stack: DemoStack, sessionId: string): Promise<TimelineItem[]> {
  let last: TimelineItem[] = [];
  // Bounded: at most ~4 s; done when two reads in a row agree.
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 200));
    let items: TimelineItem[] = [];
    try {
      items = (await api<{ items: TimelineItem[] }>('GET', `${stack.pdpUrl}/v1/sessions/${encodeURIComponent(sessionId)}`, stack.keys.auditor)).items;
    } catch {
      continue; // 404 until the first rows are written
    }
    if (items.length > 0 && items.length === last.length) return items;
    last = items;
  }
  return last;
}

export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const out = opts.out ?? (() => undefined);
  const sessionId = `demo-${randomUUID()}`;
  const stack = await startDemoStack({ databaseUrl: opts.databaseUrl, sessionId });
  // The SDK is an enforcement point too: it asks the PDP with the shim credential.
  const pdp = new PdpClient({ url: stack.pdpUrl, key: stack.keys.shim, shim: 'sdk' });
  const events: AgentEvent[] = [];
  const approvals: DemoResult['approvals'] = [];
  const approverWork: Array<Promise<void>> = [];
  let agent: ReturnType<typeof createSupportAgent> | undefined;
  try {
    out({ kind: 'banner', text: `database: ${stack.database === 'postgres' ? 'Postgres (throwaway database)' : 'embedded PGlite over the wire protocol'}; session ${sessionId}` });
    // One parent credential mints a token per step. In the demo the parent is the PDP's admin
    // API; in production inject a minter that calls your own token service instead.
    const tokens = stepTokens(
      pdpTokenMinter({ url: stack.pdpUrl, key: stack.keys.admin }),
      Object.fromEntries(DEMO_STEPS.map((s) => [s.step, s.scopes])),
      { subject: DEMO_CHAIN, chain: DEMO_CHAIN, ttlS: 300 },
    );
    const handler = new ScopegateCallbackHandler({ sessionId, chain: DEMO_CHAIN });

    // The human approver: approves the first held statement over the REST API, leaves any
    // later one pending (so the second try is held again).
    const approve = async (approvalId: string): Promise<void> => {
      const pending = await api<{ items: Array<{ id: string; summary: unknown; reasons: string[] }> }>(
        'GET',
        `${stack.pdpUrl}/v1/approvals?status=pending`,
        stack.keys.approver,
      );
      const item = pending.items.find((a) => a.id === approvalId);
      const summary = item ? item.reasons.filter((r) => r.startsWith('approval_required')).join('; ') : 'not found';
      if (approvals.length === 0) {
        await api('POST', `${stack.pdpUrl}/v1/approvals/${approvalId}/approve`, stack.keys.approver, { note: 'demo approver' });
        approvals.push({ approvalId, action: 'approved' });
        out({ kind: 'approver', action: 'approved', approvalId, summary });
      } else {
        approvals.push({ approvalId, action: 'left_pending' });
        out({ kind: 'approver', action: 'left_pending', approvalId, summary });
      }
    };

    agent = createSupportAgent({
      pdp,
      tokens,
      handler,
      httpProxyUrl: stack.httpProxyUrl,
      pgProxy: stack.pgProxy,
      approvalWaitS: opts.approvalWaitS ?? 2,
      onHeld: (id) => approverWork.push(approve(id)),
      onEvent: (event) => {
        events.push(event);
        out({ kind: 'agent', event });
      },
    });
    for (const [index, step] of DEMO_STEPS.entries()) {
      out({ kind: 'step', index: index + 1, step: step.step, title: step.title });
      await agent.runStep(step);
    }
    await Promise.all(approverWork);
    const timeline = await readTimeline(stack, sessionId);
    out({ kind: 'timeline', items: timeline });
    const payroll = (await stack.query('SELECT employee_id, bonus::text AS bonus FROM public.payroll WHERE employee_id = 7'))[0];
    return { sessionId, database: stack.database, events, approvals, timeline, crmHits: [...stack.crm.hits], modelCalls: stack.model.calls, payroll };
  } finally {
    await Promise.allSettled(approverWork);
    await agent?.close();
    await pdp.close();
    await stack.close();
  }
}
