/**
 * `guardTool(tool, options)`: every call of a LangChain.js tool is decided by the PDP
 * before it runs (resource `{kind: 'tool', name}`, the tool name and its arguments), and
 * its result is masked as the decision's obligations say.
 *
 * - allow → the tool runs; its result is masked (strings, JSON, ToolMessages, artifacts).
 * - deny → the tool does not run; the model gets a clear refusal it can read (or, with
 *   `onRefusal: 'throw'`, a ToolRefusedError is thrown).
 * - approval_required → the call waits for a human (long-poll, `approvalWaitS`) and runs
 *   once approved; otherwise it is refused with the approval id so it can be retried.
 *
 * Fail closed: a token that cannot be obtained, a PDP that cannot be reached, obligations
 * that cannot be applied — each is a refusal, never a silent run.
 *
 * The wrapper keeps the tool's class, name, description, schema and response format (it
 * is an object inheriting from the tool with `_call` replaced), so it works for
 * StructuredTool subclasses, DynamicStructuredTool, DynamicTool and `tool()` results, and
 * binds to chat models exactly like the original.
 */
import { hash } from 'node:crypto';
import stringify from 'safe-stable-stringify';
import { ToolMessage } from '@langchain/core/messages';
import type { CallbackManagerForToolRun } from '@langchain/core/callbacks/manager';
import type { RunnableConfig } from '@langchain/core/runnables';
import type { StructuredToolInterface } from '@langchain/core/tools';
import { toJsonSchema } from '@langchain/core/utils/json_schema';
import type { Decision, DecideRequest } from '../../../pdp-server/src/contract.js';
import type { ApprovalStatus } from '../../pdp-client/src/index.js';
import { compileMask, maskJson, maskText, type CompiledMask } from '../../masking/src/index.js';
import { ScopegateCallbackHandler, type RunContext } from './scopegate-callback-handler.js';

/** What the guard needs from a PDP client (`PdpClient` implements it). */
export interface Decider {
  decide(req: DecideRequest): Promise<Decision>;
  waitApproval(id: string, waitS: number): Promise<ApprovalStatus>;
}

/** The token for one call, chosen from its context (e.g. by step: `(ctx) => tokens.token(ctx.step!)`). */
export type TokenSource = string | ((ctx: RunContext) => string | Promise<string>);

export type GuardOutcome = 'allowed' | 'denied' | 'approval_pending' | 'approval_denied';

export interface GuardEvent {
  tool: string;
  outcome: GuardOutcome;
  decision: Decision;
  context: RunContext;
  approvalId?: string;
}

export interface GuardToolOptions {
  /** The PDP client (the SDK is a shim: it authenticates with the shim key). */
  pdp: Decider;
  /** The agent's scoped token for this tool call. */
  token: TokenSource;
  /** Resource name in decisions and scopes (`tool:<resource>:<action>`). Default: the tool's name. */
  resource?: string;
  /** Action in decisions and scopes. Default `call`. */
  action?: string;
  /** How long a call needing approval waits for a human, in seconds (0 = refuse at once). Default 0. */
  approvalWaitS?: number;
  /** Context defaults when no ScopegateCallbackHandler (or run metadata) supplies them. */
  context?: RunContext;
  /** Use this handler's context even when it is not among the run's callbacks. */
  handler?: ScopegateCallbackHandler;
  /** Key for the `hash` mask method (stable hashes across processes). */
  maskHashKey?: Buffer;
  /** `message` (default): the model reads a refusal as the tool's output. `throw`: ToolRefusedError. */
  onRefusal?: 'message' | 'throw';
  /** Observe every decision (transcripts, metrics). Must not throw. */
  onDecision?: (event: GuardEvent) => void;
}

/** Thrown instead of returning a refusal when `onRefusal: 'throw'`. */
export class ToolRefusedError extends Error {
  constructor(
    message: string,
    readonly outcome: Exclude<GuardOutcome, 'allowed'>,
    readonly decisionId: string,
    readonly approvalId?: string,
  ) {
    super(message);
    this.name = 'ToolRefusedError';
  }
}

/**
 * Any LangChain tool: StructuredTool and its subclasses (checked at run time for `_call`).
 * Structural rather than StructuredToolInterface, which DynamicTool does not satisfy under
 * exactOptionalPropertyTypes.
 */
export type GuardableTool = Pick<StructuredToolInterface, 'name' | 'invoke'>;

type CallFn = (arg: unknown, runManager?: CallbackManagerForToolRun, parentConfig?: RunnableConfig) => unknown;

/** Marks a guarded tool so guarding twice does not ask twice. */
const GUARDED = Symbol.for('scopegate.guarded');

export function guardTool<T extends GuardableTool>(tool: T, options: GuardToolOptions): T {
  const original = (tool as unknown as { _call?: CallFn })._call;
  if (typeof original !== 'function') throw new TypeError('guardTool needs a LangChain tool (StructuredTool, DynamicStructuredTool, DynamicTool or tool())');
  if ((tool as unknown as Record<symbol, unknown>)[GUARDED]) return tool;
  const resource = options.resource ?? tool.name;
  const action = options.action ?? 'call';
  const waitS = Math.max(0, Math.min(3600, Math.floor(options.approvalWaitS ?? 0)));
  const schemaHash = hashSchema((tool as { schema?: unknown }).schema);
  const contentAndArtifact = (tool as { responseFormat?: string }).responseFormat === 'content_and_artifact';

  const guarded = Object.create(tool) as T;
  Object.defineProperty(guarded, GUARDED, { value: true });
  Object.defineProperty(guarded, '_call', {
    configurable: true,
    writable: true,
    value: async function guardedCall(arg: unknown, runManager?: CallbackManagerForToolRun, parentConfig?: RunnableConfig): Promise<unknown> {
      const context = resolveContext(options, runManager, parentConfig);
      const refuse = (outcome: Exclude<GuardOutcome, 'allowed'>, decision: Decision, approvalId?: string): unknown => {
        options.onDecision?.({ tool: tool.name, outcome, decision, context, ...(approvalId ? { approvalId } : {}) });
        const text = refusalText(tool.name, outcome, decision, approvalId);
        if (options.onRefusal === 'throw') throw new ToolRefusedError(text, outcome, decision.decision_id, approvalId);
        return contentAndArtifact ? [text, undefined] : text;
      };

      let token: string;
      try {
        token = typeof options.token === 'string' ? options.token : await options.token(context);
        if (typeof token !== 'string' || token.length === 0) throw new Error('empty token');
      } catch (err) {
        return refuse('denied', localDeny('token_unavailable', `no token for this call: ${(err as Error).message}`));
      }
      const request: DecideRequest = {
        token,
        resource: { kind: 'tool', name: resource },
        request: { tool: { name: resource, action, arguments: toJsonArguments(arg), ...(schemaHash ? { schema_hash: schemaHash } : {}) } },
        context: { ...context, shim: 'sdk' },
      };

      let decision = await options.pdp.decide(request);
      if (decision.effect === 'approval_required') {
        const approvalId = decision.obligations.approval?.id;
        const settled = approvalId && waitS > 0 ? await awaitApproval(options.pdp, request, approvalId, waitS) : undefined;
        if (!settled || settled.status === 'pending') return refuse('approval_pending', settled?.decision ?? decision, approvalId);
        if (settled.status === 'denied') return refuse('approval_denied', settled.decision, approvalId);
        decision = settled.decision;
      }
      if (decision.effect !== 'allow' || decision.allow !== true) return refuse('denied', decision);

      let mask: CompiledMask;
      try {
        mask = compileMask(decision.obligations.mask, options.maskHashKey ? { hashKey: options.maskHashKey } : {});
      } catch {
        return refuse('denied', { ...decision, effect: 'deny', allow: false, reasons: ['mask_obligation_invalid'] });
      }
      options.onDecision?.({ tool: tool.name, outcome: 'allowed', decision, context });
      const raw = await original.call(tool, arg, runManager, parentConfig);
      if (mask.empty) return raw;
      if (isAsyncGenerator(raw)) return maskGenerator(raw, mask, contentAndArtifact);
      return maskResult(raw, mask, contentAndArtifact);
    },
  });
  return guarded;
}

/** Context precedence: run metadata, then the callback handler (run tree, defaults), then options. */
function resolveContext(options: GuardToolOptions, runManager: CallbackManagerForToolRun | undefined, config: RunnableConfig | undefined): RunContext {
  const handler = options.handler ?? runManager?.handlers.find((h): h is ScopegateCallbackHandler => h instanceof ScopegateCallbackHandler);
  const metadata = config?.metadata as Record<string, unknown> | undefined;
  const fromHandler = handler?.contextFor(runManager?.runId, metadata);
  const defaults = options.context ?? {};
  const pick = (k: keyof RunContext): string | undefined => {
    const fromMeta = k === 'run_id' ? undefined : metadata?.[`scopegate_${k === 'session_id' ? 'session' : k}`];
    if (typeof fromMeta === 'string' && fromMeta) return fromMeta;
    return fromHandler?.[k] ?? defaults[k] ?? (k === 'run_id' ? runManager?.runId : undefined);
  };
  const out: RunContext = {};
  for (const k of ['session_id', 'chain', 'step', 'run_id'] as const) {
    const v = pick(k);
    if (v !== undefined) out[k] = v.slice(0, 256);
  }
  return out;
}

/** Long-poll until the approval is decided or the wait is over; re-decide after each round. */
async function awaitApproval(
  pdp: Decider,
  request: DecideRequest,
  approvalId: string,
  waitS: number,
): Promise<{ status: 'approved' | 'denied' | 'pending'; decision: Decision }> {
  const deadline = Date.now() + waitS * 1000;
  let last: Decision | undefined;
  // Bounded: every round waits at least a second (long-poll, or a pause when it returns early).
  for (let i = 0; i <= waitS; i++) {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) break;
    const started = Date.now();
    const status = await pdp.waitApproval(approvalId, left);
    // The approval is bound to this exact request: asking again yields the allow (and its
    // obligations) once granted. Asked after 'pending' too — the decision stays the PDP's.
    last = await pdp.decide(request);
    if (last.effect === 'allow') return { status: 'approved', decision: last };
    if (status === 'denied') return { status: 'denied', decision: last };
    if (last.effect === 'deny' || status === 'expired' || status === 'approved') return { status: 'pending', decision: last };
    const elapsed = Date.now() - started;
    if (elapsed < 1000) await new Promise((r) => setTimeout(r, Math.min(1000 - elapsed, Math.max(0, deadline - Date.now()))));
  }
  return { status: 'pending', decision: last ?? localDeny('approval_timeout', 'no approval in time') };
}

/** Text the model reads instead of the tool's output. Plain, specific, and says what to do next. */
export function refusalText(toolName: string, outcome: Exclude<GuardOutcome, 'allowed'>, decision: Decision, approvalId?: string): string {
  const reasons = decision.reasons.length ? decision.reasons.join('; ') : (decision.code ?? 'denied by policy');
  switch (outcome) {
    case 'approval_pending':
      return `REFUSED by scopegate: the tool "${toolName}" was not run because it needs a human approval (approval ${approvalId ?? 'unknown'}, decision ${decision.decision_id}). Tell the user an approval is pending; the same call can be retried once it is approved.`;
    case 'approval_denied':
      return `REFUSED by scopegate: the tool "${toolName}" was not run because a human denied the approval (approval ${approvalId ?? 'unknown'}, decision ${decision.decision_id}). Do not retry this call.`;
    case 'denied':
      return `REFUSED by scopegate: the tool "${toolName}" was not run because the policy denied it (${reasons}; decision ${decision.decision_id}). Do not retry this call; explain to the user that it is not permitted.`;
  }
}

function localDeny(code: string, reason: string): Decision {
  return { decision_id: `local-${Date.now().toString(36)}`, effect: 'deny', allow: false, reasons: [reason], obligations: {}, policy_revision: '', ttl_ms: 0, code };
}

/** Arguments as plain JSON for the decision (string tools become `{input}`). */
function toJsonArguments(arg: unknown): unknown {
  if (typeof arg === 'string') return { input: arg };
  if (arg === undefined) return {};
  const text = stringify(arg);
  return text === undefined ? {} : (JSON.parse(text) as unknown);
}

function hashSchema(schema: unknown): string | undefined {
  try {
    const text = stringify(toJsonSchema(schema as Parameters<typeof toJsonSchema>[0]));
    return text === undefined ? undefined : hash('sha256', text, 'hex');
  } catch {
    // A schema the converter does not know: decided without a hash rather than not at all.
    return undefined;
  }
}

function maskResult(raw: unknown, mask: CompiledMask, contentAndArtifact: boolean): unknown {
  if (contentAndArtifact && Array.isArray(raw) && raw.length === 2) return [maskContent(raw[0], mask), maskJson(raw[1], mask)];
  return maskContent(raw, mask);
}

function maskContent(value: unknown, mask: CompiledMask): unknown {
  if (typeof value === 'string') return maskString(value, mask);
  if (ToolMessage.isInstance(value)) {
    const content = maskContent(value.content, mask) as ToolMessage['content'];
    return new ToolMessage({
      content,
      tool_call_id: value.tool_call_id,
      ...(value.name !== undefined ? { name: value.name } : {}),
      ...(value.status !== undefined ? { status: value.status } : {}),
      ...(value.artifact !== undefined ? { artifact: maskJson(value.artifact, mask) } : {}),
    });
  }
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'object' && (Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype)) return maskJson(value, mask);
  // Class instances, functions, commands: their contents cannot be masked reliably.
  throw new Error('scopegate: the tool result cannot be masked as the policy requires');
}

/** A JSON string is masked as JSON (field targets apply), anything else as text (detectors). */
function maskString(text: string, mask: CompiledMask): string {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.stringify(maskJson(JSON.parse(text), mask));
    } catch {
      // not JSON after all: mask as text
    }
  }
  return maskText(text, mask);
}

function isAsyncGenerator(v: unknown): v is AsyncGenerator<unknown, unknown> {
  return typeof v === 'object' && v !== null && typeof (v as AsyncGenerator)[Symbol.asyncIterator] === 'function' && typeof (v as AsyncGenerator).next === 'function';
}

/** Streaming tools: every event and the final result are masked before anyone sees them. */
async function* maskGenerator(gen: AsyncGenerator<unknown, unknown>, mask: CompiledMask, contentAndArtifact: boolean): AsyncGenerator<unknown, unknown> {
  // Bounded by the tool's own stream; each event is masked as it passes.
  for (;;) {
    const next = await gen.next();
    if (next.done) return maskResult(next.value, mask, contentAndArtifact);
    yield maskContent(next.value, mask);
  }
}
