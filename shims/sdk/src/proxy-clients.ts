/**
 * Point a step's clients at the shims with that step's token: ChatOpenAI (and any
 * OpenAI-compatible client, or plain fetch) at the http-proxy, a `pg` pool at the pg-proxy.
 * The token is the only credential the agent holds; the shims hold the real ones.
 */
import pg from 'pg';
import type { ChatOpenAIFields } from '@langchain/openai';
import { DECISION_ID_HEADER } from '../../../pdp-server/src/contract.js';
import type { Decider } from './guard-tool.js';

/** Header the http-proxy reads to put its decisions into a session's audit timeline. */
export const SESSION_HEADER = 'x-scopegate-session';

export interface HttpProxyTarget {
  /** Base URL of the http-proxy, e.g. http://127.0.0.1:8282 */
  proxyUrl: string;
  /** The step's scoped token. */
  token: string;
  /** Session id for the audit timeline (e.g. ScopegateCallbackHandler.sessionId). */
  sessionId?: string;
}

function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

/**
 * Fields for `new ChatOpenAI(...)` that send every model call through the http-proxy's LLM
 * route (`route`, default `/openai/v1`) with the step's token as the API key.
 */
export function chatOpenAIFields(
  opts: HttpProxyTarget & { model: string; route?: string; maxRetries?: number },
): ChatOpenAIFields & { model: string; apiKey: string } {
  return {
    model: opts.model,
    apiKey: opts.token,
    // A refusal (403) is final; a 503 from a PDP that cannot be reached may be retried once.
    maxRetries: opts.maxRetries ?? 1,
    configuration: {
      baseURL: joinUrl(opts.proxyUrl, opts.route ?? '/openai/v1'),
      ...(opts.sessionId ? { defaultHeaders: { [SESSION_HEADER]: opts.sessionId } } : {}),
    },
  };
}

/** An error body of the http-proxy: `{code, message, decision_id?, approval_id?}`. */
export interface ProxyRefusal {
  status: number;
  code: string;
  message: string;
  decision_id?: string;
  approval_id?: string;
}

/**
 * `fetch` bound to a route of the http-proxy: paths are relative to `proxyUrl + route`, the
 * step's token and the session header are added.
 */
export function httpProxyFetch(opts: HttpProxyTarget & { route: string }): (path: string, init?: RequestInit) => Promise<Response> {
  const base = joinUrl(opts.proxyUrl, opts.route);
  return (path, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${opts.token}`);
    if (opts.sessionId) headers.set(SESSION_HEADER, opts.sessionId);
    return fetch(joinUrl(base, path), { ...init, headers });
  };
}

/** The refusal in a proxy answer, or undefined when the answer is not one of the proxy's refusals. */
export async function proxyRefusal(res: Response): Promise<ProxyRefusal | undefined> {
  if (res.ok) return undefined;
  const text = await res.clone().text();
  try {
    const body = JSON.parse(text) as Partial<ProxyRefusal>;
    if (typeof body.code !== 'string') return undefined;
    return {
      status: res.status,
      code: body.code,
      message: typeof body.message === 'string' ? body.message : '',
      ...(typeof body.decision_id === 'string' ? { decision_id: body.decision_id } : {}),
      ...(typeof body.approval_id === 'string' ? { approval_id: body.approval_id } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Read an http-proxy refusal out of an error thrown by an OpenAI-compatible client (ChatOpenAI,
 * openai): the status and the decision id header. The proxy's `{code}` body is not in
 * OpenAI's error format, so the client drops it; the status says enough (401 token, 403
 * denied or approval, 503 PDP unreachable).
 */
export function llmRefusal(err: unknown): { status: number; decisionId?: string } | undefined {
  const e = err as { status?: unknown; headers?: unknown };
  if (typeof e?.status !== 'number' || ![401, 403, 503].includes(e.status)) return undefined;
  let decisionId: string | undefined;
  const h = e.headers;
  if (h instanceof Headers) decisionId = h.get(DECISION_ID_HEADER) ?? undefined;
  else if (h && typeof h === 'object') {
    const v = (h as Record<string, unknown>)[DECISION_ID_HEADER];
    if (typeof v === 'string') decisionId = v;
  }
  return { status: e.status, ...(decisionId ? { decisionId } : {}) };
}

export interface PgProxyTarget {
  host: string;
  port: number;
  /** The step's scoped token: it is the password. */
  token: string;
  /** Any name: the pg-proxy connects to its own configured database. Default `scopegate`. */
  database?: string;
  user?: string;
  /** Most connections in the pool. Default 4. */
  max?: number;
}

/** `pg` pool settings for the pg-proxy with the step's token as the password. */
export function pgPoolConfig(opts: PgProxyTarget): pg.PoolConfig {
  return {
    host: opts.host,
    port: opts.port,
    user: opts.user ?? 'agent',
    database: opts.database ?? 'scopegate',
    password: opts.token,
    max: opts.max ?? 4,
    // The proxy has already decided by the time a query runs; an idle step pool can go.
    idleTimeoutMillis: 10_000,
  };
}

export function createPgPool(opts: PgProxyTarget): pg.Pool {
  const pool = new pg.Pool(pgPoolConfig(opts));
  // An idle client's error (proxy restart) must not crash the agent; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** SQLSTATE of the pg-proxy's denials (insufficient_privilege). */
export const SQL_DENIED = '42501';

export interface SqlRefusal {
  kind: 'denied' | 'approval_required';
  decisionId?: string;
  approvalId?: string;
  detail: string;
}

/** Read a pg-proxy denial out of a `pg` error (undefined for any other error). */
export function sqlRefusal(err: unknown): SqlRefusal | undefined {
  const e = err as { code?: unknown; message?: unknown; detail?: unknown };
  if (e?.code !== SQL_DENIED) return undefined;
  const message = typeof e.message === 'string' ? e.message : '';
  const detail = typeof e.detail === 'string' ? e.detail : '';
  const decisionId = /decision_id=([\w-]+)/.exec(message)?.[1];
  const approvalId = /approval_id=([\w-]+)/.exec(`${detail} ${message}`)?.[1];
  return {
    kind: approvalId && approvalId !== 'unknown' ? 'approval_required' : 'denied',
    ...(decisionId ? { decisionId } : {}),
    ...(approvalId && approvalId !== 'unknown' ? { approvalId } : {}),
    detail: detail || message,
  };
}

export class SqlApprovalPendingError extends Error {
  constructor(readonly approvalId: string, readonly decisionId: string | undefined) {
    super(`the statement needs a human approval (approval ${approvalId}); retry once it is approved`);
    this.name = 'SqlApprovalPendingError';
  }
}

/**
 * Run `fn`; when the pg-proxy answers "approval required", wait for the approval (long-poll
 * up to `waitS`) and run it once more. The pg-proxy never holds a statement itself, so this
 * is where an agent waits. Still held after the wait → SqlApprovalPendingError; a denied
 * approval or any other error is thrown as is. At most one retry.
 */
export async function withSqlApproval<T>(
  fn: () => Promise<T>,
  opts: { pdp: Pick<Decider, 'waitApproval'>; waitS: number; onHeld?: (approvalId: string) => void },
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const refusal = sqlRefusal(err);
    if (refusal?.kind !== 'approval_required' || !refusal.approvalId) throw err;
    opts.onHeld?.(refusal.approvalId);
    const status = opts.waitS > 0 ? await opts.pdp.waitApproval(refusal.approvalId, opts.waitS) : 'pending';
    if (status !== 'approved') {
      if (status === 'denied') throw err;
      throw new SqlApprovalPendingError(refusal.approvalId, refusal.decisionId);
    }
  }
  try {
    return await fn();
  } catch (err) {
    const again = sqlRefusal(err);
    if (again?.kind === 'approval_required' && again.approvalId) throw new SqlApprovalPendingError(again.approvalId, again.decisionId);
    throw err;
  }
}
