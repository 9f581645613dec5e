/**
 * The demo agent: a plain LangChain.js tool-calling loop (ChatOpenAI + tools), made least
 * privilege with the scopegate SDK in a few lines:
 *
 * - each step gets its own token (`stepTokens`), used as the model's API key through the
 *   http-proxy and as the database password through the pg-proxy;
 * - every tool is wrapped by `guardTool`, so each call is decided before it runs;
 * - a `ScopegateCallbackHandler` carries the session, chain, step and run ids.
 */
import { ChatOpenAI } from '@langchain/openai';
import { HumanMessage, SystemMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import type { RunnableConfig } from '@langchain/core/runnables';
import { tool, type StructuredToolInterface } from '@langchain/core/tools';
import type pg from 'pg';
import { z } from 'zod';
import {
  chatOpenAIFields,
  createPgPool,
  guardTool,
  httpProxyFetch,
  llmRefusal,
  proxyRefusal,
  sqlRefusal,
  withSqlApproval,
  SqlApprovalPendingError,
  type Decider,
  type GuardEvent,
  type ScopegateCallbackHandler,
  type StepTokens,
} from '../shims/sdk/src/index.js';
import { MODEL, type DemoStep } from './demo-script.js';

export type AgentEvent =
  | { kind: 'user'; step: string; text: string }
  | { kind: 'tool_call'; step: string; tool: string; args: unknown }
  | { kind: 'guard'; step: string; tool: string; outcome: GuardEvent['outcome']; decisionId: string; reasons: string[] }
  | { kind: 'held'; step: string; tool: string; approvalId: string }
  | { kind: 'tool_result'; step: string; tool: string; text: string }
  | { kind: 'answer'; step: string; text: string }
  | { kind: 'model_refused'; step: string; status: number; decisionId: string | undefined };

export interface AgentDeps {
  pdp: Decider;
  tokens: StepTokens;
  handler: ScopegateCallbackHandler;
  httpProxyUrl: string;
  pgProxy: { host: string; port: number };
  /** How long a held statement waits for a human, seconds. */
  approvalWaitS: number;
  /** Called when a statement is held for approval (the demo's "human" may approve it). */
  onHeld: (approvalId: string) => void;
  onEvent: (event: AgentEvent) => void;
}

const SYSTEM = 'You are a support agent for an online shop. Use the tools; never reveal personal data.';

/** Bounds the tool-calling loop of one step. */
const MAX_MODEL_CALLS = 8;

export function createSupportAgent(deps: AgentDeps) {
  const pools = new Map<string, pg.Pool>();
  const stepOf = (config: RunnableConfig | undefined): string => {
    const s = config?.metadata?.scopegate_step;
    if (typeof s !== 'string') throw new Error('the tool ran outside a step');
    return s;
  };
  const poolFor = async (step: string): Promise<pg.Pool> => {
    let pool = pools.get(step);
    if (!pool) {
      pool = createPgPool({ ...deps.pgProxy, token: await deps.tokens.token(step), max: 2 });
      pools.set(step, pool);
    }
    return pool;
  };
  const crmFetch = async (step: string) =>
    httpProxyFetch({ proxyUrl: deps.httpProxyUrl, route: '/crm', token: await deps.tokens.token(step), sessionId: deps.handler.sessionId });
  const sqlError = (err: unknown): string => {
    const r = sqlRefusal(err);
    if (!r) throw err;
    return `REFUSED by scopegate (pg-proxy): ${r.detail} (decision ${r.decisionId ?? 'unknown'}).`;
  };

  const lookupOrders = tool(
    async ({ customer_id }, config) => {
      const pool = await poolFor(stepOf(config));
      try {
        const { rows } = await pool.query(
          `SELECT c.id AS customer_id, c.name, c.ssn, o.id AS order_id, o.item, o.total
             FROM public.customers c JOIN public.orders o ON o.customer_id = c.id
            WHERE c.id = $1 ORDER BY o.id`,
          [customer_id],
        );
        return JSON.stringify(rows);
      } catch (err) {
        return sqlError(err);
      }
    },
    { name: 'lookup_orders', description: "A customer's orders, with the customer's name.", schema: z.object({ customer_id: z.number().int() }) },
  );

  const crmGetContact = tool(
    async ({ id }, config) => {
      const res = await (await crmFetch(stepOf(config)))(`/v1/contacts/${encodeURIComponent(id)}`);
      const refusal = await proxyRefusal(res);
      if (refusal) return `REFUSED by scopegate (http-proxy): ${refusal.code} (decision ${refusal.decision_id ?? 'unknown'}).`;
      return await res.text();
    },
    { name: 'crm_get_contact', description: 'Read a CRM contact.', schema: z.object({ id: z.string() }) },
  );

  const crmDeleteContact = tool(
    async ({ id }, config) => {
      const res = await (await crmFetch(stepOf(config)))(`/v1/contacts/${encodeURIComponent(id)}`, { method: 'DELETE' });
      const refusal = await proxyRefusal(res);
      if (refusal) return `REFUSED by scopegate (http-proxy): ${refusal.code} (decision ${refusal.decision_id ?? 'unknown'}).`;
      return res.ok ? `Contact ${id} deleted.` : `The CRM answered HTTP ${res.status}.`;
    },
    { name: 'crm_delete_contact', description: 'Delete a CRM contact.', schema: z.object({ id: z.string() }) },
  );

  const setBonus = tool(
    async ({ employee_id, bonus }, config) => {
      const step = stepOf(config);
      const pool = await poolFor(step);
      try {
        const res = await withSqlApproval(() => pool.query('UPDATE public.payroll SET bonus = $1 WHERE employee_id = $2', [bonus, employee_id]), {
          pdp: deps.pdp,
          waitS: deps.approvalWaitS,
          onHeld: (approvalId) => {
            deps.onEvent({ kind: 'held', step, tool: 'set_bonus', approvalId });
            deps.onHeld(approvalId);
          },
        });
        return `Updated ${res.rowCount ?? 0} payroll row(s).`;
      } catch (err) {
        if (err instanceof SqlApprovalPendingError) {
          return `HELD by scopegate: the update needs a human approval (approval ${err.approvalId}); it was not run.`;
        }
        return sqlError(err);
      }
    },
    {
      name: 'set_bonus',
      description: "Set an employee's bonus in the payroll.",
      schema: z.object({ employee_id: z.number().int(), bonus: z.number() }),
    },
  );

  const onDecision = (e: GuardEvent) =>
    deps.onEvent({ kind: 'guard', step: e.context.step ?? '?', tool: e.tool, outcome: e.outcome, decisionId: e.decision.decision_id, reasons: e.decision.reasons });
  // Every tool is decided with the token of the step it runs in.
  const guard = <T extends StructuredToolInterface>(t: T): T =>
    guardTool(t, { pdp: deps.pdp, token: (ctx) => deps.tokens.token(ctx.step ?? 'none'), onDecision });
  const tools = [guard(lookupOrders), guard(crmGetContact), guard(crmDeleteContact), guard(setBonus)];
  const byName = new Map<string, StructuredToolInterface>(tools.map((t) => [t.name, t]));
  const messages: BaseMessage[] = [new SystemMessage(SYSTEM)];

  /** One user request under one step: model ↔ tools until the model answers (bounded). */
  async function runStep(step: DemoStep): Promise<void> {
    deps.handler.setStep(step.step);
    const config: RunnableConfig = { callbacks: [deps.handler], metadata: { scopegate_step: step.step } };
    const model = new ChatOpenAI(
      chatOpenAIFields({ proxyUrl: deps.httpProxyUrl, route: '/llm/v1', model: MODEL, token: await deps.tokens.token(step.step), sessionId: deps.handler.sessionId, maxRetries: 0 }),
    ).bindTools(tools);
    messages.push(new HumanMessage(step.user));
    deps.onEvent({ kind: 'user', step: step.step, text: step.user });
    for (let i = 0; i < MAX_MODEL_CALLS; i++) {
      let ai;
      try {
        ai = await model.invoke(messages, config);
      } catch (err) {
        const refusal = llmRefusal(err);
        if (!refusal) throw err;
        // The http-proxy refused the prompt: it never reached the model. Drop it from the history.
        messages.pop();
        deps.onEvent({ kind: 'model_refused', step: step.step, status: refusal.status, decisionId: refusal.decisionId });
        return;
      }
      messages.push(ai);
      if (!ai.tool_calls?.length) {
        deps.onEvent({ kind: 'answer', step: step.step, text: typeof ai.content === 'string' ? ai.content : JSON.stringify(ai.content) });
        return;
      }
      for (const call of ai.tool_calls) {
        deps.onEvent({ kind: 'tool_call', step: step.step, tool: call.name, args: call.args });
        const t = byName.get(call.name);
        const result = t
          ? ((await t.invoke({ ...call, type: 'tool_call' }, config)) as ToolMessage)
          : new ToolMessage({ content: `No tool named ${call.name}.`, tool_call_id: call.id ?? '' });
        const text = typeof result.content === 'string' ? result.content : JSON.stringify(result.content);
        deps.onEvent({ kind: 'tool_result', step: step.step, tool: call.name, text });
        messages.push(result);
      }
    }
  }

  return {
    runStep,
    async close() {
      await Promise.all([...pools.values()].map((p) => p.end().catch(() => undefined)));
    },
  };
}
