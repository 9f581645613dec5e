/**
 * One short-lived, narrowly scoped token per chain step, minted from one parent credential.
 *
 * The parent is whatever may mint: by default the PDP's `POST /v1/tokens` with an admin
 * key, but any function will do — a token broker service of yours that holds the admin key,
 * so the agent process never does. Tokens are minted lazily, cached, and re-minted shortly
 * before they expire; concurrent callers share one mint.
 */
import { request } from 'undici';
import type { MintTokenRequest, MintTokenResponse } from '../../../pdp-server/src/contract.js';

export type { MintTokenRequest, MintTokenResponse } from '../../../pdp-server/src/contract.js';

/** Anything that turns a mint request into a token: the PDP's admin API, your own broker, … */
export type TokenMinter = (req: MintTokenRequest) => Promise<MintTokenResponse>;

export class TokenMintError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'TokenMintError';
  }
}

/**
 * The default parent: `POST <url>/v1/tokens` with a credential allowed to mint (the PDP's
 * admin key). Prefer running this behind a small service of your own and injecting a
 * minter that calls it, so the admin key stays out of the agent process.
 */
export function pdpTokenMinter(opts: { url: string; key: string; timeoutMs?: number }): TokenMinter {
  const base = opts.url.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 5000;
  return async (req) => {
    let res;
    try {
      res = await request(`${base}/v1/tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.key}` },
        body: JSON.stringify(req),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new TokenMintError(`the token endpoint could not be reached: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    let body: Partial<MintTokenResponse> & { code?: string; message?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // leave empty: reported below
    }
    if (res.statusCode !== 201 && res.statusCode !== 200) {
      throw new TokenMintError(`minting failed with HTTP ${res.statusCode}${body.code ? ` (${body.code})` : ''}`, res.statusCode, body.code);
    }
    if (typeof body.token !== 'string' || typeof body.jti !== 'string' || typeof body.expires_at !== 'string') {
      throw new TokenMintError('the token endpoint answered without a token');
    }
    return { token: body.token, jti: body.jti, expires_at: body.expires_at };
  };
}

export interface StepTokensOptions {
  /** Token subject: who the agent is (`sub`). */
  subject: string;
  /** Chain name stamped into every token (`chain` claim), e.g. `support-bot`. */
  chain?: string;
  /** Lifetime of each token in seconds (the PDP caps it). Default 300. */
  ttlS?: number;
  /** Re-mint this many seconds before expiry. Default 30 (never more than half the lifetime). */
  refreshBeforeS?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface StepToken {
  step: string;
  token: string;
  jti: string;
  expiresAt: string;
}

export interface StepTokens {
  /** The steps this set knows, with their scopes. */
  readonly steps: Readonly<Record<string, readonly string[]>>;
  /** The current token of a step (minted on first use, re-minted before it expires). */
  token(step: string): Promise<string>;
  /** Like token(), with its jti and expiry (for revocation and logs). */
  get(step: string): Promise<StepToken>;
  /** Every token minted so far (current ones only). */
  minted(): StepToken[];
  /** Forget cached tokens, e.g. after revoking them. */
  clear(): void;
}

/**
 * `stepTokens(minter, { lookup: ['sql:orders-db:select:public.orders'], write: [...] }, { subject })`.
 * A step without scopes, or an unknown step, is an error: nothing is minted broader than asked.
 */
export function stepTokens(parent: TokenMinter, steps: Record<string, readonly string[]>, options: StepTokensOptions): StepTokens {
  const frozen: Record<string, readonly string[]> = {};
  for (const [step, scopes] of Object.entries(steps)) {
    if (!Array.isArray(scopes) || scopes.length === 0) throw new TypeError(`step "${step}" needs at least one scope`);
    frozen[step] = Object.freeze([...scopes]);
  }
  Object.freeze(frozen);
  const now = options.now ?? Date.now;
  const ttlS = options.ttlS ?? 300;
  const refreshMs = Math.min((options.refreshBeforeS ?? 30) * 1000, (ttlS * 1000) / 2);
  const current = new Map<string, StepToken>();
  const inflight = new Map<string, Promise<StepToken>>();

  async function mint(step: string): Promise<StepToken> {
    const scopes = frozen[step];
    if (!scopes) throw new TypeError(`unknown step "${step}"`);
    const res = await parent({
      sub: options.subject,
      scopes: [...scopes],
      ttl_s: ttlS,
      step,
      ...(options.chain !== undefined ? { chain: options.chain } : {}),
    });
    const minted: StepToken = { step, token: res.token, jti: res.jti, expiresAt: res.expires_at };
    current.set(step, minted);
    return minted;
  }

  async function get(step: string): Promise<StepToken> {
    const have = current.get(step);
    if (have && Date.parse(have.expiresAt) - refreshMs > now()) return have;
    let pending = inflight.get(step);
    if (!pending) {
      pending = mint(step).finally(() => inflight.delete(step));
      inflight.set(step, pending);
    }
    return pending;
  }

  return {
    steps: frozen,
    get,
    token: async (step) => (await get(step)).token,
    minted: () => [...current.values()],
    clear: () => current.clear(),
  };
}
