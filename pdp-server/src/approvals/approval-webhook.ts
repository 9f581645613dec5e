/**
 * Approval notifications: POST JSON to the configured webhook, signed so the receiver can
 * trust it: `X-Scopegate-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
 * webhook secret, and `X-Scopegate-Timestamp` (unix seconds; the same instant is `sent_at` in
 * the signed body, so a receiver can reject replays). Retried with exponential backoff on
 * network errors, 429 and 5xx, a bounded number of times; never blocks a decision.
 */
import { createHmac } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';

export interface WebhookOptions {
  url: string;
  secret: string | undefined;
  attempts: number;
  initialDelayMs: number;
  timeoutMs: number;
}

export function signWebhookBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export class ApprovalWebhook {
  private readonly inflight = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(
    private readonly opts: WebhookOptions,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Fire and forget; delivery continues in the background until success or attempts run out. */
  notify(type: string, payload: Record<string, unknown>): void {
    const p = this.deliver(type, payload).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private async deliver(type: string, payload: Record<string, unknown>): Promise<void> {
    const now = new Date();
    const body = JSON.stringify({ type, sent_at: now.toISOString(), ...payload });
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-scopegate-timestamp': String(Math.floor(now.getTime() / 1000)),
      'x-scopegate-event': type,
    };
    if (this.opts.secret) headers['x-scopegate-signature'] = signWebhookBody(body, this.opts.secret);
    let delay = this.opts.initialDelayMs;
    for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
      if (this.abort.signal.aborted) return;
      let retry: boolean;
      try {
        const res = await fetch(this.opts.url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.timeoutMs)]),
        });
        await res.body?.cancel();
        if (res.ok) return;
        retry = res.status === 429 || res.status >= 500;
        this.log.warn({ status: res.status, attempt, type }, 'approval webhook answered an error');
      } catch (err) {
        retry = true;
        this.log.warn({ err: (err as Error).message, attempt, type }, 'approval webhook failed');
      }
      if (!retry || attempt === this.opts.attempts) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.abort.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
      delay *= 2;
    }
    this.log.error({ type }, 'approval webhook gave up');
  }

  /** Wait for deliveries in flight (up to `graceMs`), then abort the rest. */
  async close(graceMs = 2000): Promise<void> {
    const all = Promise.allSettled([...this.inflight]);
    await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.abort.abort();
    await all;
  }
}
