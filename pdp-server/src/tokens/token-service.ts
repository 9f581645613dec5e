/**
 * Scoped tokens: minting with the PDP's own key, verifying the PDP's and trusted IdPs'
 * tokens, publishing the PDP's JWKS.
 *
 * Verification is on the decision hot path, so successful results are cached by the
 * SHA-256 of the token (the token itself is never a key and never logged) until the
 * token's own expiry. Revocation is NOT checked here: the decide pipeline checks the
 * revocation list before using these claims (and before any decision cache).
 */
import { hash, randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import {
  SignJWT,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { Config } from '../config.js';
import type { MintTokenRequest, MintTokenResponse, SubjectClaims } from '../contract.js';
import { ScopegateError } from '../errors.js';
import { loadOrCreateSigningKeys, type SigningKeySet } from './signing-keys.js';
import { toTokenError } from './token-errors.js';

export interface TokenService {
  /** Mint a token signed by the PDP's own key. TTL defaults to config.tokens.defaultTtlS; over maxTtlS → ScopegateError('token_ttl_too_long'). */
  mint(req: MintTokenRequest): Promise<MintTokenResponse & { claims: SubjectClaims }>;
  /**
   * Verify; throws ScopegateError with a token_* code (see errors.ts) on any failure.
   * Returns the verified claims: a frozen object (it may be shared with later calls for
   * the same token), with `scopes` always a string array and `exp` always present.
   */
  verify(token: string): Promise<SubjectClaims>;
  /** Public JWKS of the PDP's own key(s). */
  jwks(): { keys: JWK[] };
  close(): Promise<void>;
}

export interface TokenServiceOptions {
  /** Most verified tokens kept in memory. */
  cacheEntries?: number;
  /** Remote JWKS fetch timeout, ms. */
  jwksTimeoutMs?: number;
}

/** Longest token looked at; the decide schema caps it at the same size. */
const MAX_TOKEN_CHARS = 16 * 1024;
const DEFAULT_CACHE_ENTRIES = 10_000;
/** How long a trusted issuer's JWKS is reused before it is fetched again. */
const REMOTE_JWKS_MAX_AGE_MS = 10 * 60_000;
/** After a successful fetch, an unknown kid does not trigger another fetch for this long. */
const REMOTE_JWKS_COOLDOWN_MS = 30_000;
const REMOTE_JWKS_TIMEOUT_MS = 3_000;
/**
 * A cached verification never outlives the remote JWKS cache age, so a key an IdP
 * withdraws stops being honoured within that time even for long-lived external tokens.
 */
const MAX_CACHE_TTL_MS = REMOTE_JWKS_MAX_AGE_MS;
/** Rejected whatever the configuration says: no signature, or a shared secret. */
const FORBIDDEN_ALG = /^(none|HS\d+)$/i;

type VerifiedClaims = SubjectClaims & { exp: number };

/** Where the keys of one issuer come from, and what audience its tokens must carry. */
interface IssuerKeys {
  issuer: string;
  audience: string;
  getKey: JWTVerifyGetKey;
}

export async function createTokenService(
  config: Readonly<Config>,
  log: FastifyBaseLogger,
  options: TokenServiceOptions = {},
): Promise<TokenService> {
  const t = config.tokens;
  const algorithms = t.algorithms.filter((a) => !FORBIDDEN_ALG.test(a));
  const allowedAlgs = new Set(algorithms);
  const keys: SigningKeySet = await loadOrCreateSigningKeys(config.dataDir, algorithms, log);
  const publicJwks: readonly JWK[] = keys.all.map((k) => k.publicJwk);

  const issuers = new Map<string, IssuerKeys>();
  issuers.set(t.issuer, { issuer: t.issuer, audience: t.audience, getKey: createLocalJWKSet({ keys: [...publicJwks] }) });
  for (const ti of t.trustedIssuers) {
    if (issuers.has(ti.issuer)) {
      log.warn({ iss: ti.issuer }, 'trusted issuer has the same name as this PDP (or is listed twice); ignoring it');
      continue;
    }
    issuers.set(ti.issuer, {
      issuer: ti.issuer,
      audience: ti.audience ?? t.audience,
      getKey: remoteKeys(ti.issuer, new URL(ti.jwks_url), options.jwksTimeoutMs ?? REMOTE_JWKS_TIMEOUT_MS, log),
    });
  }

  const cache = new LRUCache<string, VerifiedClaims>({ max: options.cacheEntries ?? DEFAULT_CACHE_ENTRIES });

  async function verifyUncached(token: string): Promise<VerifiedClaims> {
    // Everything up to jwtVerify reads the token unverified, only to pick the rules: the
    // algorithm is checked against the allow-list before any key is looked up, so
    // `alg: none` and HS256-with-the-public-key never reach a key at all.
    if (token.length > MAX_TOKEN_CHARS || token.split('.').length !== 3) throw new ScopegateError('token_malformed');
    let alg: unknown;
    let iss: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch (err) {
      throw new ScopegateError('token_malformed', undefined, { cause: err });
    }
    if (typeof alg !== 'string' || !allowedAlgs.has(alg)) throw new ScopegateError('token_invalid_algorithm');
    const source = typeof iss === 'string' ? issuers.get(iss) : undefined;
    if (source === undefined) throw new ScopegateError('token_invalid_issuer');

    const { payload } = await jwtVerify(token, source.getKey, {
      algorithms,
      issuer: source.issuer,
      audience: source.audience,
      clockTolerance: t.clockSkewS,
      requiredClaims: ['exp', 'sub'],
    });
    return normaliseClaims(payload);
  }

  return {
    async mint(req) {
      const ttl = req.ttl_s ?? t.defaultTtlS;
      if (!Number.isInteger(ttl) || ttl < 1) throw new ScopegateError('bad_request', 'ttl_s must be a positive integer.');
      if (ttl > t.maxTtlS) throw new ScopegateError('token_ttl_too_long');
      if (typeof req.sub !== 'string' || req.sub === '') throw new ScopegateError('bad_request', 'sub is required.');
      if (!Array.isArray(req.scopes) || req.scopes.length === 0 || !req.scopes.every((s) => typeof s === 'string' && s !== '')) {
        throw new ScopegateError('bad_request', 'scopes must be a non-empty list of non-empty strings.');
      }

      const signer = keys.active;
      const now = Math.floor(Date.now() / 1000);
      const exp = now + ttl;
      const jti = randomUUID();
      const aud = req.aud ?? t.audience;
      const extra = {
        scopes: [...req.scopes],
        ...(req.chain !== undefined ? { chain: req.chain } : {}),
        ...(req.step !== undefined ? { step: req.step } : {}),
      };
      const token = await new SignJWT(extra)
        .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'JWT' })
        .setIssuer(t.issuer)
        .setSubject(req.sub)
        .setAudience(aud)
        .setJti(jti)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(exp)
        .sign(signer.privateKey);
      const claims: SubjectClaims = { iss: t.issuer, sub: req.sub, aud, jti, iat: now, nbf: now, exp, ...extra };
      return { token, jti, expires_at: new Date(exp * 1000).toISOString(), claims };
    },

    async verify(token) {
      if (typeof token !== 'string' || token === '') throw new ScopegateError('token_missing');
      // Hot path: one hash, one map lookup. exp is re-checked because the entry TTL and
      // the wall clock are different clocks; a past-exp entry is dropped and re-verified.
      const key = hash('sha256', token, 'base64url');
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.exp * 1000 > Date.now()) return hit;
        cache.delete(key);
      }
      let claims: VerifiedClaims;
      try {
        claims = await verifyUncached(token);
      } catch (err) {
        // Failures are not cached: many are transient (an IdP's JWKS briefly down), and a
        // cached failure could be replayed against a token that would verify a moment
        // later. Every failing check here is bounded (size cap, alg check before crypto).
        const e = toTokenError(err);
        if (log.level === 'debug' || log.level === 'trace') {
          log.debug({ code: e.code, ...unverifiedLogFields(token, issuers) }, 'token rejected');
        }
        throw e;
      }
      // Cache until exp (never past it: a token inside the clock-skew grace is verified
      // every time) and never longer than a remote key set is trusted without refetching.
      const ttl = Math.min(claims.exp * 1000 - Date.now(), MAX_CACHE_TTL_MS);
      if (ttl > 0) cache.set(key, claims, { ttl });
      return claims;
    },

    jwks() {
      return { keys: publicJwks.map((k) => ({ ...k })) };
    },

    async close() {
      cache.clear();
    },
  };
}

/**
 * A trusted issuer's keys, fetched from its JWKS URL (jose caches them, refetches on an
 * unknown kid at most once per cooldown, and times out). A fetch that fails is reported
 * as token_keys_unavailable, not as a bad token: the token may be fine, we just cannot
 * check it, so it is denied.
 */
function remoteKeys(iss: string, url: URL, timeoutMs: number, log: FastifyBaseLogger): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url, {
    timeoutDuration: timeoutMs,
    cooldownDuration: REMOTE_JWKS_COOLDOWN_MS,
    cacheMaxAge: REMOTE_JWKS_MAX_AGE_MS,
  });
  let lastWarnAt = 0;
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      if (
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported
      ) {
        throw err;
      }
      // One warning per cooldown per issuer, not one per request while the IdP is down.
      if (Date.now() - lastWarnAt > REMOTE_JWKS_COOLDOWN_MS) {
        lastWarnAt = Date.now();
        log.warn({ iss, code: 'token_keys_unavailable', error: (err as Error)?.name }, 'could not fetch the JWKS of a trusted issuer');
      }
      throw new ScopegateError('token_keys_unavailable', undefined, { cause: err });
    }
  };
}

/** Check and normalise the claims a policy relies on; the result is frozen. */
function normaliseClaims(payload: JWTPayload): VerifiedClaims {
  const { sub, iss, exp, scope, scopes: rawScopes, ...rest } = payload;
  if (typeof sub !== 'string' || sub === '' || typeof iss !== 'string' || typeof exp !== 'number') {
    throw new ScopegateError('token_invalid_claims');
  }
  let scopes: string[];
  if (Array.isArray(rawScopes) && rawScopes.every((s) => typeof s === 'string')) {
    scopes = [...(rawScopes as string[])];
  } else if (rawScopes === undefined && typeof scope === 'string') {
    // OAuth 2.0 (RFC 8693 §4.2 / RFC 9068) style: one space-separated string.
    scopes = scope.split(' ').filter((s) => s !== '');
  } else {
    throw new ScopegateError('token_invalid_claims');
  }
  for (const name of ['chain', 'step', 'jti'] as const) {
    if (rest[name] !== undefined && typeof rest[name] !== 'string') throw new ScopegateError('token_invalid_claims');
  }
  return deepFreeze({ ...rest, sub, iss, exp, scopes });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Fields safe to log about a rejected token: its kid and, only when it names an issuer we
 * know, its iss. Unverified values an attacker chose are otherwise kept out of the logs.
 */
function unverifiedLogFields(token: string, issuers: ReadonlyMap<string, IssuerKeys>): { kid?: string; iss?: string } {
  try {
    const kid = decodeProtectedHeader(token).kid;
    const iss = decodeJwt(token).iss;
    return {
      ...(typeof kid === 'string' ? { kid: kid.slice(0, 128) } : {}),
      ...(typeof iss === 'string' && issuers.has(iss) ? { iss } : {}),
    };
  } catch {
    return {};
  }
}
