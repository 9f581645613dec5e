/**
 * The shims' client for the PDP: keep-alive connection pool, timeouts, a small local cache
 * bounded by each decision's ttl_ms, and fail-closed behaviour — it never throws and never
 * answers allow unless the PDP said so.
 */
import { hash, randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { Agent, request } from 'undici';
import type { CachedDecisionReport, Decision, DecideRequest } from '../../../pdp-server/src/contract.js';
import { CachedUseReporter } from './cached-use-reporter.js';

export type { Decision, DecideRequest } from '../../../pdp-server/src/contract.js';

export interface PdpClientOptions {
  /** Base URL of the PDP, e.g. http://127.0.0.1:8181 */
  url: string;
  /** The shim's own credential for the PDP (SCOPEGATE_SHIM_KEY). */
  key: string;
  /** Name of the enforcing shim, stamped into every decision's context. */
  shim: string;
  /** Per-request timeout; a PDP slower than this means deny. Default 2000 ms. */
  timeoutMs?: number;
  /** Most decisions kept in the local cache (0 disables it). Default 10,000. */
  cacheMax?: number;
  /** Keep-alive connections to the PDP. Default 16. */
  connections?: number;
  /**
   * Follow the PDP's revocation feed (`GET /v1/revocations/stream`) and drop the local cache
   * on every revocation, so a revoked token stops working here as fast as at the PDP. While
   * the feed is not connected the local cache is not used. Default: on when caching.
   */
  revocationFeed?: boolean;
  /** How often calls answered from the local cache are reported to the decision log. Default 250 ms. */
  reportIntervalMs?: number;
}

export type ApprovalStatus = 'approved' | 'denied' | 'expired' | 'pending';

/** Reason codes of denials made by the client itself (the PDP never answered). */
export const CLIENT_DENY_CODE = 'pdp_unavailable';

export class PdpClient {
  readonly #base: string;
  readonly #key: string;
  readonly #shim: string;
  readonly #timeoutMs: number;
  readonly #agent: Agent;
  readonly #cache: LRUCache<string, CachedDecision> | undefined;
  /** True while the revocation feed is connected: only then may cached allows be served. */
  #feedLive = false;
  /** Bumped whenever the cache is dropped (revocation, feed loss, clearCache): ends every `AllowLease`. */
  #epoch = 0;
  readonly #feedAbort = new AbortController();
  /** Calls answered from the cache go to the decision log through this; while it lags, no cache. */
  readonly #reporter: CachedUseReporter;

  constructor(opts: PdpClientOptions) {
    this.#base = opts.url.replace(/\/+$/, '');
    this.#key = opts.key;
    this.#shim = opts.shim;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#agent = new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, pipelining: 1 });
    this.#reporter = new CachedUseReporter({ send: (r) => this.#report(r), intervalMs: opts.reportIntervalMs ?? 250 });
    const max = opts.cacheMax ?? 10_000;
    this.#cache = max > 0 ? new LRUCache<string, CachedDecision>({ max, ttlAutopurge: false }) : undefined;
    if (this.#cache && opts.revocationFeed !== false) void this.#followRevocations();
    else this.#feedLive = this.#cache !== undefined; // caching without the feed was asked for explicitly
  }

  /** Whether cached allow decisions may be served now: the revocation feed is connected and the uses of cached answers are being reported. */
  get cacheLive(): boolean {
    return this.#cacheLiveAt(Date.now());
  }

  /** `cacheLive` at time `now` (ms since the epoch), for a caller that already read the clock. */
  #cacheLiveAt(now: number): boolean {
    return this.#cache !== undefined && this.#feedLive && this.#reporter.healthyAt(now);
  }

  /**
   * Keep a Server-Sent Events connection to the PDP's revocation feed; clear the cache on
   * every event and whenever the connection drops (revocations may have been missed), and
   * reconnect with backoff until closed.
   */
  async #followRevocations(): Promise<void> {
    const signal = this.#feedAbort.signal;
    let backoffMs = 250;
    while (!signal.aborted) {
      try {
        const res = await request(`${this.#base}/v1/revocations/stream`, {
          method: 'GET',
          dispatcher: this.#agent,
          headers: { authorization: `Bearer ${this.#key}`, accept: 'text/event-stream' },
          headersTimeout: this.#timeoutMs,
          // The PDP sends a heartbeat every 15 s; a silent minute means the feed is gone.
          bodyTimeout: 60_000,
          signal,
        });
        if (res.statusCode !== 200) {
          await res.body.dump().catch(() => {});
          throw new Error(`revocation feed answered HTTP ${res.statusCode}`);
        }
        let pending = '';
        for await (const chunk of res.body) {
          pending += (chunk as Buffer).toString('utf8');
          let end: number;
          while ((end = pending.indexOf('\n\n')) >= 0) {
            const event = pending.slice(0, end);
            pending = pending.slice(end + 2);
            if (/^event: (ready|revocation)$/m.test(event)) {
              this.#dropCache();
              this.#feedLive = true;
              backoffMs = 250;
            }
          }
        }
        throw new Error('revocation feed ended');
      } catch {
        this.#feedLive = false;
        this.#dropCache();
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, backoffMs);
          t.unref();
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
  }

  /**
   * The cached allow decision for exactly this request, synchronously, or undefined (then
   * call `decide`). Lets a hot path skip a promise per request; same rules as `decide`'s
   * cache: served only while the revocation feed is live, and the whole token must match.
   * It comes with the terms under which a caller may reuse it for the same request without
   * looking it up again: until the entry's ttl ends and as long as the cache has not been
   * dropped since (a revocation, a lost feed) — check with `leaseValid`.
   */
  cachedAllowLease(req: DecideRequest): AllowLease | undefined {
    if (!this.#cache || !this.cacheLive) return undefined;
    const hit = this.#cache.get(cacheKey(req, this.#shim));
    if (!hit || hit.token !== req.token || hit.decision.effect !== 'allow') return undefined;
    this.#reporter.record(req, hit.decision);
    return { decision: hit.decision, expiresAt: hit.expiresAt, epoch: this.#epoch };
  }

  /** Whether a lease from `cachedAllowLease` still holds: the cached entry would still be served. */
  leaseValid(lease: AllowLease): boolean {
    if (lease.epoch !== this.#epoch) return false;
    const now = Date.now();
    return now < lease.expiresAt && this.#cacheLiveAt(now);
  }

  #dropCache(): void {
    this.#cache?.clear();
    this.#epoch++;
  }

  /**
   * Count one more call answered with a cached allow outside `decide` (a caller reusing an
   * `AllowLease`): every such call must reach the decision log too.
   */
  recordCachedUse(req: DecideRequest, decision: Decision): void {
    this.#reporter.record(req, decision);
  }

  /** Send a report of cached uses; false when the PDP did not take it (it is retried). */
  async #report(report: CachedDecisionReport): Promise<boolean> {
    try {
      const res = await request(`${this.#base}/v1/decisions/cached`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.#key}` },
        body: JSON.stringify(report),
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  /** Ask the PDP. Never throws: any failure is a deny decision with code `pdp_unavailable`. */
  async decide(req: DecideRequest): Promise<Decision> {
    const key = this.#cache && this.cacheLive ? cacheKey(req, this.#shim) : undefined;
    if (key !== undefined) {
      const hit = this.#cache!.get(key);
      // The key carries only the token's tail; the whole token must match too.
      if (hit && hit.token === req.token) {
        this.#reporter.record(req, hit.decision);
        return hit.decision;
      }
    }
    const body: DecideRequest = { ...req, context: { ...req.context, shim: req.context?.shim ?? this.#shim } };
    try {
      const res = await request(`${this.#base}/v1/decide`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.#key}` },
        body: JSON.stringify(body),
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) return clientDeny(`pdp answered HTTP ${res.statusCode}`);
      const decision = parseDecision(text);
      if (!decision) return clientDeny('pdp answer was not a decision');
      // Only allow decisions are cached locally: a denial is cheap to re-ask and an
      // approval must be re-checked every time (it may have been granted meanwhile).
      if (key !== undefined && decision.effect === 'allow' && decision.ttl_ms > 0) {
        this.#cache!.set(key, { token: req.token, decision, expiresAt: Date.now() + decision.ttl_ms }, { ttl: decision.ttl_ms });
      }
      return decision;
    } catch (err) {
      return clientDeny(`pdp unreachable: ${(err as Error).message}`);
    }
  }

  /** Long-poll an approval until it leaves `pending` or `waitS` passes. Failure reads as `pending`. */
  async waitApproval(id: string, waitS: number): Promise<ApprovalStatus> {
    const wait = Math.max(0, Math.min(60, Math.floor(waitS)));
    try {
      const res = await request(`${this.#base}/v1/approvals/${encodeURIComponent(id)}?wait=${wait}`, {
        method: 'GET',
        dispatcher: this.#agent,
        headers: { authorization: `Bearer ${this.#key}` },
        headersTimeout: (wait + 5) * 1000,
        bodyTimeout: (wait + 5) * 1000,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) return 'pending';
      const status = (JSON.parse(text) as { status?: unknown }).status;
      return status === 'approved' || status === 'denied' || status === 'expired' ? status : 'pending';
    } catch {
      return 'pending';
    }
  }

  /** Forget cached decisions (e.g. after a revocation notice). */
  clearCache(): void {
    this.#dropCache();
  }

  async close(): Promise<void> {
    this.#feedAbort.abort();
    this.#feedLive = false;
    await this.#reporter.close();
    await this.#agent.destroy();
  }
}

/** Keys up to this many characters are used as they are; longer ones (big prompts) are hashed to bound memory. */
const RAW_KEY_MAX = 4096;
/** Characters of the token in the key: a JWT's signature tail is as good as unique. */
const TOKEN_TAIL = 32;

interface CachedDecision {
  token: string;
  decision: Decision;
  /** Date.now() after which the entry must not be served (the LRU's own ttl ends about then too). */
  expiresAt: number;
}

/** A cached allow handed out for reuse; see `PdpClient.cachedAllowLease`. */
export interface AllowLease {
  decision: Decision;
  expiresAt: number;
  epoch: number;
}

/**
 * The local cache key: the token's tail + resource + request + context minus the per-call
 * fields; the whole token is compared on a hit (a string compare instead of hashing and
 * serialising ~1 KB of token for every lookup). Tokens sharing a tail only evict each
 * other. Built with plain JSON.stringify (native, several times faster than a sorted
 * stringify): the shims build their requests in a fixed key order, and a different order
 * can only cause a miss, never a wrong hit — equal keys mean identical decision inputs.
 * Short keys are used as they are; long ones (big prompts) are hashed so a cache full of
 * them stays small. The prefixes keep the two apart.
 */
function cacheKey(req: DecideRequest, defaultShim: string): string {
  // The context fields that can change a decision (the contract allows no others; session,
  // run and client address are per call). Listed, not copied with a rest spread: V8's
  // object rest is a slow path, and this runs for every request.
  const c = req.context;
  // sql.text_sha256 binds approvals only; policies never see it, so it must not split entries.
  // (Tested with `in`, not read: a caller may compute it lazily for requests sent to the PDP.)
  const sql = req.request.sql;
  const fast = sql ? sqlRequestJson(req.request, sql) : undefined;
  const raw =
    fast !== undefined
      ? `[${JSON.stringify(req.token.slice(-TOKEN_TAIL))},${JSON.stringify(req.resource)},${fast},${JSON.stringify([c?.chain, c?.step, c?.shim ?? defaultShim]).slice(1)}`
      : JSON.stringify([
          req.token.slice(-TOKEN_TAIL),
          req.resource,
          sql && 'text_sha256' in sql ? { ...req.request, sql: { statements: sql.statements, fingerprint: sql.fingerprint } } : req.request,
          c?.chain,
          c?.step,
          c?.shim ?? defaultShim,
        ]);
  return raw.length <= RAW_KEY_MAX ? `r${raw}` : `h${hash('sha256', raw, 'base64url')}`;
}

type SqlRequestBody = NonNullable<DecideRequest['request']['sql']>;

/** JSON of deep-frozen statement lists, by identity: a frozen list cannot change under its memo. */
const statementsJson = new WeakMap<readonly object[], string>();

function deepFrozen(statements: SqlRequestBody['statements']): boolean {
  if (!Object.isFrozen(statements)) return false;
  for (const st of statements) {
    if (!Object.isFrozen(st) || !Object.isFrozen(st.relations) || !Object.isFrozen(st.columns) || !Object.isFrozen(st.functions)) return false;
    if ((st.effects && !Object.isFrozen(st.effects)) || (st.writes && !Object.isFrozen(st.writes))) return false;
  }
  return true;
}

/**
 * The JSON.stringify of `{sql: {statements, fingerprint}}` for a request that is only that
 * (plus text_sha256, left out), reusing the statements' JSON when the list is deep-frozen
 * (the pg-proxy's summaries are): byte for byte what the general path would produce.
 * Undefined for any other request shape.
 */
function sqlRequestJson(request: DecideRequest['request'], sql: SqlRequestBody): string | undefined {
  for (const k in request) if (k !== 'sql') return undefined;
  for (const k in sql) if (k !== 'statements' && k !== 'fingerprint' && k !== 'text_sha256') return undefined;
  if (typeof sql.fingerprint !== 'string' || !Array.isArray(sql.statements) || !deepFrozen(sql.statements)) return undefined;
  let json = statementsJson.get(sql.statements);
  if (json === undefined) {
    json = JSON.stringify(sql.statements);
    statementsJson.set(sql.statements, json);
  }
  return `{"sql":{"statements":${json},"fingerprint":${JSON.stringify(sql.fingerprint)}}}`;
}

function parseDecision(text: string): Decision | undefined {
  try {
    const d = JSON.parse(text) as Partial<Decision>;
    if (typeof d.decision_id !== 'string' || typeof d.effect !== 'string' || typeof d.allow !== 'boolean') return undefined;
    if (!['allow', 'deny', 'approval_required'].includes(d.effect)) return undefined;
    // Belt and braces: allow only when both fields agree.
    const allow = d.effect === 'allow' && d.allow === true;
    return {
      decision_id: d.decision_id,
      effect: allow ? 'allow' : d.effect === 'allow' ? 'deny' : d.effect,
      allow,
      reasons: Array.isArray(d.reasons) ? d.reasons.filter((r): r is string => typeof r === 'string') : [],
      obligations: d.obligations && typeof d.obligations === 'object' ? d.obligations : {},
      policy_revision: typeof d.policy_revision === 'string' ? d.policy_revision : '',
      ttl_ms: typeof d.ttl_ms === 'number' && d.ttl_ms > 0 ? d.ttl_ms : 0,
      ...(typeof d.code === 'string' ? { code: d.code } : {}),
    };
  } catch {
    return undefined;
  }
}

function clientDeny(reason: string): Decision {
  return {
    decision_id: randomUUID(),
    effect: 'deny',
    allow: false,
    reasons: [reason],
    obligations: {},
    policy_revision: '',
    ttl_ms: 0,
    code: CLIENT_DENY_CODE,
  };
}
