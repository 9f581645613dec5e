/**
 * The inputs both servers decide: one /v1/decide body shape, sent to scopegate as is and to
 * OPA wrapped as {"input": …}. Cold bodies never repeat (a fresh token and a fresh relation
 * name each time, so neither a decision cache nor a verified-token cache can answer);
 * the warm body is one request repeated.
 */
import type { DecideRequest } from '../../pdp-server/src/contract.js';

/** Scopes of every bench token: a realistic handful, so matching does real work. */
export const BENCH_SCOPES = [
  'sql:orders-db:select:public.*',
  'sql:orders-db:insert:public.audit_log',
  'http:crm:GET:/v1/contacts/*',
  'llm:openai:chat:gpt-4o-mini',
];

/** A read of `relation` on orders-db. `public.customers` carries a masked column (email). */
export function decideBody(token: string, relation: string): DecideRequest {
  return {
    token,
    resource: { kind: 'sql', name: 'orders-db' },
    request: {
      sql: {
        statements: [
          {
            command: 'select',
            relations: [relation],
            columns: [`${relation}.id`, `${relation}.email`, `${relation}.created_at`],
            functions: ['count'],
          },
        ],
      },
    },
    context: { session_id: 'bench-session', chain: 'bench', step: 'lookup', shim: 'bench' },
  };
}

export type Target = 'scopegate' | 'opa';

/** The same decision request, framed for each server's API. */
export function frame(target: Target, body: DecideRequest): string {
  return target === 'opa' ? JSON.stringify({ input: body }) : JSON.stringify(body);
}

/** Mints one token for the bench subject with BENCH_SCOPES. */
export type Mint = () => Promise<string>;

/**
 * Tokens handed out at most once per server. Each server has its own cursor, so both see
 * the same token sequence; a server whose cursor runs past the end wraps around and the
 * reuse is counted (and reported), not hidden.
 */
export class TokenPool {
  private readonly tokens: string[] = [];
  private readonly cursors = new Map<Target, number>();
  private readonly reused = new Map<Target, number>();

  constructor(private readonly mint: Mint) {}

  get size(): number {
    return this.tokens.length;
  }

  reuseCount(target: Target): number {
    return this.reused.get(target) ?? 0;
  }

  next(target: Target): string {
    const i = this.cursors.get(target) ?? 0;
    this.cursors.set(target, i + 1);
    if (i >= this.tokens.length) this.reused.set(target, (this.reused.get(target) ?? 0) + 1);
    const t = this.tokens[i % this.tokens.length];
    if (t === undefined) throw new Error('token pool is empty');
    return t;
  }

  /** Mint until `target` has at least `count` unused tokens; returns how many were minted. */
  async ensure(target: Target, count: number, concurrency = 8): Promise<number> {
    const want = (this.cursors.get(target) ?? 0) + count - this.tokens.length;
    if (want <= 0) return 0;
    let left = want;
    const worker = async () => {
      while (left > 0) {
        left--;
        this.tokens.push(await this.mint());
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return want;
  }
}

/** Mints through the PDP's admin API, exactly as a client would. */
export function apiMint(pdpUrl: string, adminKey: string): Mint {
  return async () => {
    const res = await fetch(`${pdpUrl}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      // Long enough for the whole run; the PDP caps TTLs at SCOPEGATE_TOKEN_MAX_TTL_S (1 h).
      body: JSON.stringify({ sub: 'bench-agent', scopes: BENCH_SCOPES, ttl_s: BENCH_TOKEN_TTL_S }),
    });
    if (res.status !== 201) throw new Error(`mint failed: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  };
}

export const BENCH_TOKEN_TTL_S = 1800;

/** Unique relation names: `public.bench_<n>` for n = 0, 1, 2, … (per server). */
export class RelationSequence {
  private readonly counters = new Map<Target, number>();
  next(target: Target): string {
    const n = this.counters.get(target) ?? 0;
    this.counters.set(target, n + 1);
    return `public.bench_${n}`;
  }
}
