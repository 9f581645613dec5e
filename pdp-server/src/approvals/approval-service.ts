/**
 * Just-in-time approvals. A policy answering `approval_required` makes the decide pipeline
 * call `resolve`: an approved, unexpired grant for the same subject and the same request
 * fingerprint is used (once, or until its window ends) and the request is allowed; otherwise
 * one pending request per (subject, fingerprint) is found or created, a webhook is sent and
 * the request stays held. Approvers decide via REST; the requester never can.
 *
 * All state lives in the database and every check-and-set is one conditional UPDATE, so any
 * number of replicas can serve the same approvals; `wait` polls the database (every 250 ms)
 * so a long-poll on one replica sees a decision made on another.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { newDecisionId } from '../audit/decision-id.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { Resource } from '../contract.js';
import { ScopegateError } from '../errors.js';
import type { Db } from '../store/db.js';
import type { DecisionLog } from '../audit/decision-log.js';
import { ApprovalWebhook } from './approval-webhook.js';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'consumed';

export interface Approval {
  id: string;
  subject: string;
  fingerprint: string;
  resource: Resource;
  reasons: string[];
  summary: unknown;
  status: ApprovalStatus;
  mode: 'once' | 'window';
  window_s: number | null;
  decision_id: string;
  session_id: string | null;
  chain: string | null;
  step: string | null;
  created_at: string;
  /** Pending: deadline to decide. Approved: deadline to use the grant. */
  expires_at: string;
  decided_at: string | null;
  decided_by: string | null;
  note: string | null;
  uses: number;
}

export interface ResolveRequest {
  subject: string;
  fingerprint: string;
  reasons: string[];
  resource: Resource;
  summary: unknown;
  mode?: 'once' | 'window';
  window_s?: number;
  decision_id: string;
  /** Where the request came from, so approval events appear in the session timeline. */
  context?: { session_id?: string | undefined; chain?: string | undefined; step?: string | undefined };
}

export interface ApprovalService {
  resolve(req: ResolveRequest): Promise<{ effect: 'allow' | 'approval_required'; approval: { id: string; expires_at: string; status: string } }>;
  get(id: string): Promise<Approval | undefined>;
  list(filter: { status?: string; limit?: number }): Promise<Approval[]>;
  decide(id: string, verdict: 'approve' | 'deny', by: { role: string; name: string }, note?: string): Promise<Approval>;
  wait(id: string, waitS: number): Promise<Approval | undefined>;
  close(): Promise<void>;
}

export interface ApprovalServiceOptions {
  pollMs: number;
  sweepMs: number;
  webhookAttempts: number;
  webhookInitialDelayMs: number;
  webhookTimeoutMs: number;
}

const DEFAULTS: ApprovalServiceOptions = {
  pollMs: 250,
  sweepMs: 30_000,
  webhookAttempts: 5,
  webhookInitialDelayMs: 500,
  webhookTimeoutMs: 5_000,
};

const iso = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
/** A pending or approved row past its deadline reads as expired even before the sweep marks it. */
const COLUMNS = `id, subject, fingerprint, resource_kind, resource_name, reasons, summary,
  CASE WHEN status IN ('pending', 'approved') AND expires_at <= now() THEN 'expired' ELSE status END AS status,
  mode, window_s, decision_id, session_id, chain, step, ${iso('created_at')} AS created_at, ${iso('expires_at')} AS expires_at,
  ${iso('decided_at')} AS decided_at, decided_by, note, uses`;

function toApproval(row: Record<string, unknown>): Approval {
  const { resource_kind, resource_name, ...rest } = row;
  return {
    ...(rest as unknown as Omit<Approval, 'resource'>),
    resource: { kind: String(resource_kind), name: String(resource_name) },
    window_s: row.window_s === null ? null : Number(row.window_s),
    uses: Number(row.uses),
  };
}

export async function createApprovalService(
  db: Db,
  config: Readonly<Config>,
  log: FastifyBaseLogger,
  decisionLog: DecisionLog,
  options: Partial<ApprovalServiceOptions> = {},
): Promise<ApprovalService> {
  const opts = { ...DEFAULTS, ...options };
  const ttlS = config.approvals.ttlS;
  const webhook = config.approvals.webhookUrl
    ? new ApprovalWebhook(
        {
          url: config.approvals.webhookUrl,
          secret: config.approvals.webhookSecret,
          attempts: opts.webhookAttempts,
          initialDelayMs: opts.webhookInitialDelayMs,
          timeoutMs: opts.webhookTimeoutMs,
        },
        log,
      )
    : undefined;
  // Wakes local long-polls at once when the decision is made on this replica.
  const decided = new EventEmitter();
  decided.setMaxListeners(0);
  let closed = false;

  function record(event: string, a: Approval, extra: string[] = []): void {
    const effect = event === 'approval.requested' ? 'approval_required' : ['approval.denied', 'approval.expired'].includes(event) ? 'deny' : 'allow';
    decisionLog.append({
      decision_id: newDecisionId(),
      time: new Date().toISOString(),
      subject: a.subject,
      issuer: null,
      jti: null,
      chain: a.chain,
      step: a.step,
      session_id: a.session_id,
      shim: null,
      resource_kind: a.resource.kind,
      resource_name: a.resource.name,
      request_summary: a.summary,
      effect,
      reasons: [...a.reasons, ...extra],
      code: null,
      policy_revision: '',
      latency_us: 0,
      cache_hit: false,
      approval_id: a.id,
      event,
    });
    webhook?.notify(event, { approval: publicView(a) });
  }

  function publicView(a: Approval): Record<string, unknown> {
    return {
      id: a.id,
      subject: a.subject,
      resource: a.resource,
      reasons: a.reasons,
      summary: a.summary,
      status: a.status,
      mode: a.mode,
      expires_at: a.expires_at,
      decided_by: a.decided_by,
    };
  }

  /** Mark overdue rows expired (optionally for one subject+fingerprint) and log each. */
  async function expireOverdue(scope?: { subject: string; fingerprint: string }): Promise<void> {
    const params: unknown[] = [];
    let extra = '';
    if (scope) {
      params.push(scope.subject, scope.fingerprint);
      extra = ' AND subject = $1 AND fingerprint = $2';
    }
    const r = await db.query<Record<string, unknown>>(
      `UPDATE approvals SET status = 'expired' WHERE status IN ('pending', 'approved') AND expires_at <= now()${extra} RETURNING ${COLUMNS}`,
      params,
    );
    for (const row of r.rows) record('approval.expired', toApproval(row));
  }

  const sweep = setInterval(() => {
    expireOverdue().catch((err: Error) => log.warn({ err: err.message }, 'approval sweep failed'));
  }, opts.sweepMs);
  sweep.unref();

  const service: ApprovalService = {
    async resolve(req) {
      // 1. Use an approved grant for exactly this subject and request, atomically: a
      //    single-use grant is consumed by exactly one caller even across replicas.
      const used = await db.query<Record<string, unknown>>(
        `UPDATE approvals SET uses = uses + 1, last_used_at = now(), last_used_by_decision = $3,
                status = CASE WHEN mode = 'once' THEN 'consumed' ELSE status END
          WHERE id = (SELECT id FROM approvals
                       WHERE subject = $1 AND fingerprint = $2 AND status = 'approved' AND expires_at > now()
                       ORDER BY decided_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING ${COLUMNS}`,
        [req.subject, req.fingerprint, req.decision_id],
      );
      if (used.rows[0]) {
        const a = toApproval(used.rows[0]);
        record(a.mode === 'once' ? 'approval.consumed' : 'approval.used', a, [`used by decision ${req.decision_id}`]);
        return { effect: 'allow', approval: { id: a.id, expires_at: a.expires_at, status: a.status } };
      }

      // 2. Otherwise find or create the one pending request for (subject, fingerprint).
      await expireOverdue({ subject: req.subject, fingerprint: req.fingerprint });
      const mode = req.mode === 'window' ? 'window' : 'once';
      const windowS = mode === 'window' && req.window_s !== undefined && req.window_s > 0 ? Math.floor(req.window_s) : null;
      for (let attempt = 0; attempt < 3; attempt++) {
        const ins = await db.query<Record<string, unknown>>(
          `INSERT INTO approvals (id, subject, fingerprint, resource_kind, resource_name, reasons, summary, status, mode,
                                  window_s, decision_id, session_id, chain, step, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'pending', $8, $9, $10, $11, $12, $13, now() + make_interval(secs => $14))
           ON CONFLICT (subject, fingerprint) WHERE status = 'pending' DO NOTHING
           RETURNING ${COLUMNS}`,
          [
            randomUUID(),
            req.subject,
            req.fingerprint,
            req.resource.kind,
            req.resource.name,
            req.reasons,
            JSON.stringify(req.summary ?? null),
            mode,
            windowS,
            req.decision_id,
            req.context?.session_id ?? null,
            req.context?.chain ?? null,
            req.context?.step ?? null,
            ttlS,
          ],
        );
        if (ins.rows[0]) {
          const a = toApproval(ins.rows[0]);
          record('approval.requested', a);
          return { effect: 'approval_required', approval: { id: a.id, expires_at: a.expires_at, status: a.status } };
        }
        const existing = await db.query<Record<string, unknown>>(
          `SELECT ${COLUMNS} FROM approvals WHERE subject = $1 AND fingerprint = $2 AND status = 'pending' AND expires_at > now()`,
          [req.subject, req.fingerprint],
        );
        if (existing.rows[0]) {
          const a = toApproval(existing.rows[0]);
          return { effect: 'approval_required', approval: { id: a.id, expires_at: a.expires_at, status: a.status } };
        }
        // The pending row was decided or expired between our INSERT and SELECT: try again.
      }
      throw new ScopegateError('unavailable', 'approval request could not be recorded');
    },

    async get(id) {
      const r = await db.query<Record<string, unknown>>(`SELECT ${COLUMNS} FROM approvals WHERE id = $1`, [id]);
      return r.rows[0] ? toApproval(r.rows[0]) : undefined;
    },

    async list(filter) {
      await expireOverdue();
      const params: unknown[] = [];
      let where = '';
      if (filter.status !== undefined) {
        params.push(filter.status);
        where = 'WHERE status = $1';
      }
      params.push(Math.min(Math.max(filter.limit ?? 100, 1), 1000));
      const r = await db.query<Record<string, unknown>>(
        `SELECT ${COLUMNS} FROM approvals ${where} ORDER BY created_at DESC, id LIMIT $${params.length}`,
        params,
      );
      return r.rows.map(toApproval);
    },

    async decide(id, verdict, by, note) {
      const current = await service.get(id);
      if (!current) throw new ScopegateError('not_found', 'No approval with that id.');
      if (current.subject === by.name) throw new ScopegateError('approval_self_decision');
      if (current.status === 'expired') throw new ScopegateError('approval_expired');
      if (current.status !== 'pending') throw new ScopegateError('approval_not_pending');
      const status = verdict === 'approve' ? 'approved' : 'denied';
      // Conditional on still pending, unexpired and not the requester: the check above is only
      // for a precise error; this UPDATE is what decides, atomically.
      const r = await db.query<Record<string, unknown>>(
        `UPDATE approvals SET status = $2, decided_at = now(), decided_by = $3, decided_by_role = $4, note = $5,
                expires_at = CASE WHEN $2 = 'approved'
                                  THEN now() + make_interval(secs => CASE WHEN mode = 'window' THEN coalesce(window_s, $6) ELSE $6 END)
                                  ELSE expires_at END
          WHERE id = $1 AND status = 'pending' AND expires_at > now() AND subject <> $3
          RETURNING ${COLUMNS}`,
        [id, status, by.name, by.role, note ?? null, ttlS],
      );
      if (!r.rows[0]) {
        const now = await service.get(id);
        throw new ScopegateError(now?.status === 'expired' ? 'approval_expired' : 'approval_not_pending');
      }
      const a = toApproval(r.rows[0]);
      record(`approval.${status}`, a, [`${status} by ${by.name} (${by.role})`, ...(note ? [`note: ${note}`] : [])]);
      decided.emit(id);
      // The approver's answer, like a decision's, goes out only once its log entry is journaled.
      await decisionLog.journaled();
      return a;
    },

    async wait(id, waitS) {
      const deadline = Date.now() + Math.max(0, waitS) * 1000;
      for (let i = 0; i < 100_000; i++) {
        const a = await service.get(id);
        if (!a || a.status !== 'pending' || closed || Date.now() >= deadline) return a;
        const left = deadline - Date.now();
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            decided.off(id, done);
            resolve();
          };
          const t = setTimeout(done, Math.min(opts.pollMs, left));
          decided.on(id, done);
        });
      }
      return service.get(id);
    },

    async close() {
      closed = true;
      clearInterval(sweep);
      await webhook?.close();
    },
  };
  return service;
}
