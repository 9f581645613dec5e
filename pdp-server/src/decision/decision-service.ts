/**
 * The decision pipeline — the one path every decision takes, whichever API asked:
 *
 *   verify token → revocation check → cache lookup → evaluate WASM → approval → cache store → log
 *
 * Fail closed: every error on the way becomes a deny decision carrying a stable code.
 */
import { hash } from 'node:crypto';
import stringify from 'safe-stable-stringify';
import type {
  CachedDecisionReport,
  DecideRequest,
  Decision,
  DecisionContext,
  DecisionRequestBody,
  Effect,
  PolicyInput,
  PolicyResult,
  Resource,
  SubjectClaims,
} from '../contract.js';
import { isScopegateError, ScopegateError, type ErrorCode } from '../errors.js';
import type { ApprovalService } from '../approvals/approval-service.js';
import type { DecisionLog } from '../audit/decision-log.js';
import type { PolicyEngine } from '../policy/policy-engine.js';
import { summariseRequest } from './request-summary.js';
import { newDecisionId } from '../audit/decision-id.js';

/** What the pipeline needs from its collaborators; each is a small interface so backends can vary. */
export interface TokenVerifier {
  verify(token: string): Promise<SubjectClaims>;
}
export interface RevocationCheck {
  isRevoked(claims: SubjectClaims): boolean;
}
export interface ResultCache {
  get(key: string): Promise<PolicyResult | undefined>;
  set(key: string, value: PolicyResult, ttlMs: number): Promise<void>;
}
export interface CacheKeyParts {
  revision: string;
  tokenId: string;
  resource: Resource;
  request: DecisionRequestBody;
  context: Pick<DecisionContext, 'chain' | 'step' | 'shim'>;
}
export type ApprovalResolver = Pick<ApprovalService, 'resolve'>;
export type DecisionLogSink = Pick<DecisionLog, 'append' | 'journaled'>;
export interface DecisionObserver {
  /** Called once per decision, for metrics. */
  observe(d: { effect: Effect; cacheHit: boolean; seconds: number; code: string | undefined }): void;
}

export interface DecisionDeps {
  engine: PolicyEngine;
  tokens: TokenVerifier;
  revocations?: RevocationCheck | undefined;
  cache?: ResultCache | undefined;
  cacheKey?: ((parts: CacheKeyParts) => string) | undefined;
  approvals?: ApprovalResolver | undefined;
  log?: DecisionLogSink | undefined;
  observer?: DecisionObserver | undefined;
  /** Errors are logged here (never the token). */
  onError?: ((err: unknown, code: ErrorCode) => void) | undefined;
}

export interface DecideMeta {
  /** Which API asked (decide, batch, data, check). Goes to the log's shim column when the context has none. */
  via?: string;
}

export class DecisionService {
  constructor(private readonly deps: DecisionDeps) {}

  async decide(req: DecideRequest, meta: DecideMeta = {}): Promise<Decision> {
    const started = process.hrtime.bigint();
    const decision_id = newDecisionId();
    const context = req.context ?? {};
    let claims: SubjectClaims | undefined;
    let revision = this.deps.engine.active?.revision ?? '';
    let cacheHit = false;
    let result: PolicyResult;
    let code: ErrorCode | undefined;
    let approvalId: string | null = null;

    try {
      claims = await this.deps.tokens.verify(req.token);
      if (this.deps.revocations?.isRevoked(claims)) {
        result = denial('token_revoked');
        code = 'token_revoked';
      } else {
        const evaluated = await this.evaluate(req, claims, context);
        result = evaluated.result;
        revision = evaluated.revision;
        cacheHit = evaluated.cacheHit;
        if (result.effect === 'approval_required') {
          const approved = await this.approve(req, claims, result, decision_id);
          result = approved.result;
          approvalId = approved.approvalId;
        }
      }
    } catch (err) {
      code = isScopegateError(err) ? err.code : 'policy_evaluation_failed';
      if (!isScopegateError(err) || err.statusCode >= 500) this.deps.onError?.(err, code);
      result = denial(code);
    }

    const decision: Decision = {
      decision_id,
      effect: result.effect,
      allow: result.effect === 'allow',
      reasons: result.reasons,
      obligations: result.obligations ?? {},
      policy_revision: revision,
      ttl_ms: result.effect === 'approval_required' ? 0 : capTtl(result.ttl_ms ?? 0, claims),
      ...(code ? { code } : {}),
    };
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.deps.observer?.observe({ effect: decision.effect, cacheHit, seconds, code });
    // Answer only once the entry is journaled: an answered decision is never missing from the log.
    this.deps.log?.append({
      decision_id,
      time: new Date().toISOString(),
      subject: claims?.sub ?? null,
      issuer: claims?.iss ?? null,
      jti: claims?.jti ?? null,
      chain: context.chain ?? claims?.chain ?? null,
      step: context.step ?? claims?.step ?? null,
      session_id: context.session_id ?? null,
      shim: context.shim ?? meta.via ?? null,
      resource_kind: req.resource.kind,
      resource_name: req.resource.name,
      request_summary: summariseRequest(req.request),
      effect: decision.effect,
      reasons: decision.reasons,
      code: code ?? null,
      policy_revision: revision,
      latency_us: Math.round(seconds * 1e6),
      cache_hit: cacheHit,
      approval_id: approvalId,
    });
    await this.deps.log?.journaled();
    return decision;
  }

  /**
   * Log what a shim answered from its local cache (see CachedDecisionUse): one row per
   * session and reused decision, with how many calls it covers and when. Each token is
   * verified again, so the row names the subject; a token that no longer verifies (revoked
   * or expired since the shim cached the allow) is still logged — the calls happened — with
   * the code saying why. Returns the number of rows logged.
   */
  async recordCachedUses(report: CachedDecisionReport): Promise<number> {
    const claims: Array<{ claims?: SubjectClaims | undefined; code?: ErrorCode | undefined }> = await Promise.all(
      report.tokens.map(async (token) => {
        try {
          const c = await this.deps.tokens.verify(token);
          return this.deps.revocations?.isRevoked(c) ? { claims: c, code: 'token_revoked' as const } : { claims: c };
        } catch (err) {
          return { code: isScopegateError(err) ? err.code : ('token_malformed' as ErrorCode) };
        }
      }),
    );
    const now = Date.now();
    // Rows are filed by time: keep a shim's clock from placing them outside the last day.
    const at = (ms: number) => new Date(Math.min(now, Math.max(now - 86_400_000, ms))).toISOString();
    let logged = 0;
    for (const use of report.uses) {
      const who = claims[use.token] ?? { code: 'token_missing' as ErrorCode };
      const context = use.context ?? {};
      this.deps.log?.append({
        decision_id: newDecisionId(),
        time: at(use.last_ms),
        subject: who.claims?.sub ?? null,
        issuer: who.claims?.iss ?? null,
        jti: who.claims?.jti ?? null,
        chain: context.chain ?? who.claims?.chain ?? null,
        step: context.step ?? who.claims?.step ?? null,
        session_id: context.session_id ?? null,
        shim: context.shim ?? null,
        resource_kind: use.resource.kind,
        resource_name: use.resource.name,
        request_summary: {
          ...summariseRequest(use.request),
          cached_use: { decision_id: use.decision_id, count: use.count, first: at(use.first_ms), last: at(use.last_ms) },
        },
        effect: 'allow',
        reasons: [`answered by the shim from its cache of decision ${use.decision_id}`],
        code: who.code ?? null,
        policy_revision: use.policy_revision,
        latency_us: 0,
        cache_hit: true,
        approval_id: null,
        event: 'decision.cached',
      });
      logged += 1;
    }
    await this.deps.log?.journaled();
    return logged;
  }

  /**
   * Evaluate another compiled entrypoint (OPA Data API) with an input whose `subject` the
   * caller has already set from a verified token. Logged like any decision: the effect is
   * allow only for `true`, `{allow: true}` or `{effect: "allow"}` results.
   */
  async evaluateEntrypoint(
    entrypoint: string,
    input: Record<string, unknown>,
    subPath: readonly string[] = [],
  ): Promise<{ result?: unknown; decision_id: string }> {
    const started = process.hrtime.bigint();
    const decision_id = newDecisionId();
    let value: unknown;
    let revision = this.deps.engine.active?.revision ?? '';
    let code: ErrorCode | undefined;
    try {
      ({ value, revision } = this.deps.engine.evaluateRaw(input, entrypoint));
      for (const key of subPath) {
        value = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)[key] : undefined;
      }
    } catch (err) {
      code = isScopegateError(err) ? err.code : 'policy_evaluation_failed';
      this.deps.onError?.(err, code);
    }
    const v = value as { allow?: unknown; effect?: unknown } | undefined;
    const effect: Effect = value === true || v?.allow === true || v?.effect === 'allow' ? 'allow' : 'deny';
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.deps.observer?.observe({ effect, cacheHit: false, seconds, code });
    const subject = input.subject as SubjectClaims | undefined;
    this.deps.log?.append({
      decision_id,
      time: new Date().toISOString(),
      subject: subject?.sub ?? null,
      issuer: subject?.iss ?? null,
      jti: subject?.jti ?? null,
      chain: subject?.chain ?? null,
      step: subject?.step ?? null,
      session_id: null,
      shim: 'data-api',
      resource_kind: 'data',
      resource_name: [entrypoint, ...subPath].join('/'),
      request_summary: {},
      effect,
      reasons: code ? [code] : [],
      code: code ?? null,
      policy_revision: revision,
      latency_us: Math.round(seconds * 1e6),
      cache_hit: false,
      approval_id: null,
    });
    await this.deps.log?.journaled();
    if (code) throw new ScopegateError(code);
    return value === undefined ? { decision_id } : { result: value, decision_id };
  }

  /** Cache lookup, then WASM evaluation on a miss. */
  private async evaluate(
    req: DecideRequest,
    claims: SubjectClaims,
    context: DecisionContext,
  ): Promise<{ result: PolicyResult; revision: string; cacheHit: boolean }> {
    const active = this.deps.engine.active;
    const revision = active?.revision ?? '';
    const { cache, cacheKey } = this.deps;
    const request = policyView(req.request);
    let key: string | undefined;
    if (cache && cacheKey && active) {
      key = cacheKey({
        revision,
        tokenId: claims.jti ? `jti:${claims.iss}:${claims.jti}` : `tok:${sha256(req.token)}`,
        resource: req.resource,
        request,
        context: pick(context),
      });
      const hit = await cache.get(key);
      if (hit) return { result: hit, revision, cacheHit: true };
    }
    const input: PolicyInput = { subject: claims, resource: req.resource, request, context };
    const { result, revision: evaluatedRevision } = this.deps.engine.decide(input);
    const ttl = capTtl(result.ttl_ms ?? 0, claims);
    // Only cache under the revision that produced the answer; a swap mid-flight changes the key.
    if (cache && key !== undefined && evaluatedRevision === revision && ttl > 0 && result.effect !== 'approval_required') {
      await cache.set(key, result, ttl);
    }
    return { result, revision: evaluatedRevision, cacheHit: false };
  }

  private async approve(
    req: DecideRequest,
    claims: SubjectClaims,
    result: PolicyResult,
    decision_id: string,
  ): Promise<{ result: PolicyResult; approvalId: string | null }> {
    const approvals = this.deps.approvals;
    // Without an approval store there is nobody to ask: the request stays held (not allowed).
    if (!approvals) return { result, approvalId: null };
    const spec = (result.obligations?.approval ?? {}) as { mode?: unknown; window_s?: unknown };
    const out = await approvals.resolve({
      subject: claims.sub,
      fingerprint: requestFingerprint(req.resource, req.request),
      reasons: result.reasons,
      resource: req.resource,
      summary: summariseRequest(req.request),
      ...(spec.mode === 'once' || spec.mode === 'window' ? { mode: spec.mode } : {}),
      ...(typeof spec.window_s === 'number' ? { window_s: spec.window_s } : {}),
      decision_id,
      context: {
        ...(req.context?.session_id ? { session_id: req.context.session_id } : {}),
        ...(req.context?.chain ?? claims.chain ? { chain: (req.context?.chain ?? claims.chain)! } : {}),
        ...(req.context?.step ?? claims.step ? { step: (req.context?.step ?? claims.step)! } : {}),
      },
    });
    const obligations = { ...(result.obligations ?? {}), approval: out.approval };
    if (out.effect === 'allow') {
      return {
        result: { ...result, effect: 'allow', reasons: [...result.reasons, `approved ${out.approval.id}`], obligations, ttl_ms: 0 },
        approvalId: out.approval.id,
      };
    }
    return { result: { ...result, obligations, ttl_ms: 0 }, approvalId: out.approval.id };
  }
}

/**
 * The request as policies see it: without `sql.text_sha256`, which only binds approvals to
 * the exact statement text (so literal values do not split cached decisions).
 */
export function policyView(request: DecisionRequestBody): DecisionRequestBody {
  if (request.sql?.text_sha256 === undefined) return request;
  const { text_sha256: _exact, ...sql } = request.sql;
  return { ...request, sql };
}

/** An approval is bound to this: the resource plus the exact canonical request. */
export function requestFingerprint(resource: Resource, request: DecisionRequestBody): string {
  return sha256(stringify({ resource, request }) ?? '');
}

function denial(code: ErrorCode): PolicyResult {
  return { effect: 'deny', reasons: [code], obligations: {}, ttl_ms: 0 };
}

/** A decision may never be reused past the token's own expiry. */
function capTtl(ttlMs: number, claims: SubjectClaims | undefined): number {
  if (ttlMs <= 0) return 0;
  if (claims?.exp === undefined) return ttlMs;
  return Math.max(0, Math.min(ttlMs, claims.exp * 1000 - Date.now()));
}

function pick(c: DecisionContext): Pick<DecisionContext, 'chain' | 'step' | 'shim'> {
  const out: Pick<DecisionContext, 'chain' | 'step' | 'shim'> = {};
  if (c.chain !== undefined) out.chain = c.chain;
  if (c.step !== undefined) out.step = c.step;
  if (c.shim !== undefined) out.shim = c.shim;
  return out;
}

function sha256(s: string): string {
  return hash('sha256', s, 'base64url');
}
