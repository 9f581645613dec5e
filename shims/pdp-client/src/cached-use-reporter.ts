/**
 * Every call a shim answers from its local cache must still reach the decision log. Logging
 * them one by one would cost the PDP a row per SQL statement; instead the reporter counts
 * reuses per (cached decision, session) and sends the counts to `POST /v1/decisions/cached`
 * every `intervalMs`, where each becomes one `decision.cached` row.
 *
 * The cache is only as trustworthy as this report: while reports cannot be delivered (the PDP
 * is down or refuses them) and unreported uses pile up past `maxPending`, or the oldest has
 * waited longer than `maxDelayMs`, `healthy` turns false and the client stops answering from
 * its cache, so every call goes to the PDP — and is logged there — until a report succeeds.
 */
import type { CachedDecisionReport, CachedDecisionUse, DecideRequest, Decision } from '../../../pdp-server/src/contract.js';

interface PendingUse {
  token: string;
  use: Omit<CachedDecisionUse, 'token'>;
}

export interface CachedUseReporterOptions {
  /** Deliver one report; resolves true once the PDP accepted it. Must not throw. */
  send: (report: CachedDecisionReport) => Promise<boolean>;
  intervalMs?: number;
  maxPending?: number;
  maxDelayMs?: number;
}

/** The PDP takes at most this many uses (and tokens) per report; larger batches are split. */
const MAX_USES = 5000;
const MAX_TOKENS = 1000;

export class CachedUseReporter {
  readonly #send: CachedUseReporterOptions['send'];
  readonly #intervalMs: number;
  readonly #maxPending: number;
  readonly #maxDelayMs: number;
  /**
   * Unreported uses by decision id, then session id: two lookups with strings the caller
   * already holds, instead of building a combined key string for every use.
   */
  #pending = new Map<string, Map<string, PendingUse>>();
  /** Number of (decision, session) entries in `#pending`. */
  #pendingCount = 0;
  /** When the oldest unreported use happened (0 = none pending). */
  #oldest = 0;
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #closed = false;

  constructor(opts: CachedUseReporterOptions) {
    this.#send = opts.send;
    this.#intervalMs = opts.intervalMs ?? 250;
    this.#maxPending = opts.maxPending ?? 10_000;
    this.#maxDelayMs = opts.maxDelayMs ?? 5_000;
  }

  /** False while unreported uses pile up: the caller must not answer from its cache then. */
  get healthy(): boolean {
    return this.healthyAt(Date.now());
  }

  /** `healthy` at time `now` (ms since the epoch), for a caller that already read the clock. */
  healthyAt(now: number): boolean {
    if (this.#closed) return false;
    if (this.#pendingCount >= this.#maxPending) return false;
    return this.#oldest === 0 || now - this.#oldest <= this.#maxDelayMs;
  }

  /** Count one call answered from the cache with `decision`. */
  record(req: DecideRequest, decision: Decision): void {
    const now = Date.now();
    const session = req.context?.session_id ?? '';
    // The decision id already stands for the token and the request it was cached under.
    let bySession = this.#pending.get(decision.decision_id);
    const seen = bySession?.get(session);
    if (seen) {
      seen.use.count += 1;
      seen.use.last_ms = now;
    } else {
      if (bySession === undefined) this.#pending.set(decision.decision_id, (bySession = new Map()));
      this.#pendingCount++;
      bySession.set(session, {
        token: req.token,
        use: {
          decision_id: decision.decision_id,
          policy_revision: decision.policy_revision,
          resource: req.resource,
          request: req.request,
          ...(req.context ? { context: req.context } : {}),
          count: 1,
          first_ms: now,
          last_ms: now,
        },
      });
      if (this.#oldest === 0) this.#oldest = now;
    }
    this.#schedule();
  }

  /** Send everything recorded so far (one report at a time); what fails stays pending. */
  async flush(): Promise<void> {
    while (this.#sending) await this.#sending;
    if (this.#pendingCount === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#pendingCount = 0;
    const oldest = this.#oldest;
    this.#oldest = 0;
    this.#sending = (async () => {
      const failed: PendingUse[] = [];
      let chunk: PendingUse[] = [];
      const tokens = new Map<string, number>();
      const sendChunk = async () => {
        if (chunk.length === 0) return;
        const report: CachedDecisionReport = {
          tokens: [...tokens.keys()],
          uses: chunk.map((p) => ({ token: tokens.get(p.token)!, ...p.use })),
        };
        if (!(await this.#send(report))) failed.push(...chunk);
        chunk = [];
        tokens.clear();
      };
      for (const bySession of batch.values()) {
        for (const p of bySession.values()) {
          if (!tokens.has(p.token)) {
            if (tokens.size >= MAX_TOKENS) await sendChunk();
            tokens.set(p.token, tokens.size);
          }
          chunk.push(p);
          if (chunk.length >= MAX_USES) await sendChunk();
        }
      }
      await sendChunk();
      if (failed.length > 0) this.#requeue(failed, oldest);
    })();
    try {
      await this.#sending;
    } finally {
      this.#sending = undefined;
    }
  }

  /** Put undelivered uses back (merged with any recorded meanwhile) and retry later. */
  #requeue(failed: PendingUse[], oldest: number): void {
    for (const p of failed) {
      const session = p.use.context?.session_id ?? '';
      let bySession = this.#pending.get(p.use.decision_id);
      const now = bySession?.get(session);
      if (now) {
        now.use.count += p.use.count;
        now.use.first_ms = Math.min(now.use.first_ms, p.use.first_ms);
      } else {
        if (bySession === undefined) this.#pending.set(p.use.decision_id, (bySession = new Map()));
        bySession.set(session, p);
        this.#pendingCount++;
      }
    }
    this.#oldest = this.#oldest === 0 ? oldest : Math.min(this.#oldest, oldest);
    this.#schedule();
  }

  /** A report goes out `intervalMs` after the first use not yet on its way. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Deliver what is pending (one attempt) and stop. */
  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
    this.#closed = true;
  }
}
