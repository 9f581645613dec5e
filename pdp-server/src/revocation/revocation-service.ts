/**
 * Revocation of scoped tokens, by jti or by subject, effective on every replica at once.
 *
 * The store (Postgres / PGlite) is the truth: a revocation is committed there first, then
 * applied to this replica's memory and announced on the cluster bus, so other replicas apply
 * it within a pub/sub round trip. Pub/sub can lose messages (a replica that is disconnected
 * never sees them), so every replica also reads the store:
 *   - at start (everything unexpired),
 *   - every POLL_DEGRADED_MS while the bus is down or absent (multi-replica Postgres without
 *     Redis): at most ~1 s stale,
 *   - in full each time the bus subscription comes back (nothing published meanwhile is missed),
 *   - every POLL_SAFETY_MS while the bus is up, in case this replica's publisher and
 *     subscriber disagree about Redis (e.g. a partition that only cut one connection).
 * The check itself is synchronous and in memory: the decision path never waits on I/O for it.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { SubjectClaims } from '../contract.js';
import type { Db } from '../store/db.js';
import type { ClusterBus } from '../cluster/cluster-bus.js';
import { serialRunner } from '../cluster/serial-runner.js';

export interface Revocation {
  id: string;
  jti: string | null;
  sub: string | null;
  /** Subject revocations: tokens of `sub` issued (iat) before this instant are revoked. */
  issued_before: string | null;
  reason: string | null;
  created_at: string;
  /** When the revoked token(s) expire anyway; null = unknown, kept. */
  expires_at: string | null;
  by: string;
}

export interface RevocationService {
  /** Synchronous, in memory; the decide pipeline calls it BEFORE any cache lookup. */
  isRevoked(claims: SubjectClaims): boolean;
  revokeToken(jti: string, opts: { exp?: number; reason?: string; by: string }): Promise<Revocation>;
  /** Revokes every token of `sub` issued before now. */
  revokeSubject(sub: string, opts: { reason?: string; by: string }): Promise<Revocation>;
  /** Unexpired revocations, newest first (at most LIST_LIMIT). */
  list(): Promise<Revocation[]>;
  /**
   * Called once for every revocation this replica learns of (made here, announced by another
   * replica, or found by a poll), so shims can drop what they cached. Returns an unsubscribe.
   */
  onRevocation(fn: (r: Revocation) => void): () => void;
  close(): Promise<void>;
}

/** Poll interval while the bus is down or absent: bounds staleness at about one second. */
export const POLL_DEGRADED_MS = 500;
/** Poll interval while the bus is up (a safety net, not the delivery path). */
export const POLL_SAFETY_MS = 5_000;
/** How often expired entries are pruned and the whole table is re-read. */
export const PRUNE_MS = 60_000;
/**
 * Incremental polls re-read rows created this long before the previous poll's database time,
 * so a row whose INSERT committed a little after its created_at (= transaction start) is seen.
 */
const POLL_LOOKBACK = '10 seconds';
export const LIST_LIMIT = 10_000;

interface RevocationRow {
  id: string;
  jti: string | null;
  sub: string | null;
  issued_before: Date | string | null;
  reason: string | null;
  created_at: Date | string;
  expires_at: Date | string | null;
  revoked_by: string;
}

const COLUMNS = 'id, jti, sub, issued_before, reason, created_at, expires_at, revoked_by';

const iso = (v: Date | string | null): string | null => (v === null ? null : new Date(v).toISOString());

function fromRow(r: RevocationRow): Revocation {
  return {
    id: r.id,
    jti: r.jti,
    sub: r.sub,
    issued_before: iso(r.issued_before),
    reason: r.reason,
    created_at: iso(r.created_at) ?? '',
    expires_at: iso(r.expires_at),
    by: r.revoked_by,
  };
}

/** A revocation received from another replica; anything malformed is dropped (the store will tell). */
function parseRevocation(data: unknown): Revocation | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const d = data as Record<string, unknown>;
  const strOrNull = (v: unknown) => v === null || typeof v === 'string';
  if (typeof d.id !== 'string' || typeof d.created_at !== 'string' || typeof d.by !== 'string') return undefined;
  if (!strOrNull(d.jti) || !strOrNull(d.sub) || !strOrNull(d.issued_before) || !strOrNull(d.reason) || !strOrNull(d.expires_at)) {
    return undefined;
  }
  if ((d.jti === null) === (d.sub === null)) return undefined;
  for (const t of [d.created_at, d.issued_before, d.expires_at]) {
    if (typeof t === 'string' && !Number.isFinite(Date.parse(t))) return undefined;
  }
  if (d.sub !== null && d.issued_before === null) return undefined;
  return d as unknown as Revocation;
}

/**
 * Kept this long past the revoked token's expiry: the token verifier accepts a token for a
 * clock skew past exp, and replicas' clocks differ a little.
 */
export const EXPIRY_MARGIN_MS = 60_000;

/** The in-memory view: only ever grows between prunes (a revocation is never undone). */
export class RevocationSet {
  /** jti → expiry in ms (Infinity when unknown). */
  private readonly tokens = new Map<string, number>();
  /** sub → tokens issued before this many ms are revoked; expiry in ms. */
  private readonly subjects = new Map<string, { issuedBeforeMs: number; expiresMs: number }>();

  apply(r: Revocation, nowMs: number): void {
    const expiresMs = r.expires_at === null ? Infinity : Date.parse(r.expires_at) + EXPIRY_MARGIN_MS;
    if (expiresMs <= nowMs) return;
    if (r.jti !== null) {
      this.tokens.set(r.jti, Math.max(this.tokens.get(r.jti) ?? 0, expiresMs));
    } else if (r.sub !== null && r.issued_before !== null) {
      const prev = this.subjects.get(r.sub);
      const issuedBeforeMs = Date.parse(r.issued_before);
      this.subjects.set(r.sub, {
        issuedBeforeMs: Math.max(prev?.issuedBeforeMs ?? 0, issuedBeforeMs),
        expiresMs: Math.max(prev?.expiresMs ?? 0, expiresMs),
      });
    }
  }

  isRevoked(claims: SubjectClaims): boolean {
    if (typeof claims.jti === 'string' && this.tokens.has(claims.jti)) return true;
    const s = typeof claims.sub === 'string' ? this.subjects.get(claims.sub) : undefined;
    if (s) {
      // iat has one-second resolution: a token minted in the same second as the revocation
      // counts as "before" (revoked). A token without iat cannot prove it is newer: revoked.
      if (typeof claims.iat !== 'number' || !Number.isFinite(claims.iat)) return true;
      if (claims.iat * 1000 < s.issuedBeforeMs) return true;
    }
    return false;
  }

  prune(nowMs: number): number {
    let n = 0;
    for (const [k, exp] of this.tokens) if (exp <= nowMs) (this.tokens.delete(k), n++);
    for (const [k, s] of this.subjects) if (s.expiresMs <= nowMs) (this.subjects.delete(k), n++);
    return n;
  }
}

export async function createRevocationService(
  db: Db,
  config: Readonly<Config>,
  log: FastifyBaseLogger,
  bus?: ClusterBus,
): Promise<RevocationService> {
  const set = new RevocationSet();
  let cursor: string | undefined; // database time of the last poll
  let closed = false;
  const listeners = new Set<(r: Revocation) => void>();
  /** Ids already announced to listeners (bounded: forgotten once pruned from the store). */
  const announced = new Map<string, number>();
  const learn = (r: Revocation, nowMs: number) => {
    set.apply(r, nowMs);
    if (announced.has(r.id)) return;
    announced.set(r.id, r.expires_at ? Date.parse(r.expires_at) : Number.POSITIVE_INFINITY);
    for (const fn of listeners) {
      try {
        fn(r);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'revocation listener failed');
      }
    }
  };

  // One store read at a time: polls, resyncs and prunes never overlap.
  const serial = serialRunner(
    () => closed,
    (what, err) => log.warn({ err: err.message, what }, 'revocation sync failed; will retry'),
  );

  const fullResync = async () => {
    const now = await db.query<{ now: Date | string }>('SELECT now() AS now');
    const rows = await db.query<RevocationRow>(
      `SELECT ${COLUMNS} FROM scopegate_revocations WHERE expires_at IS NULL OR expires_at > now() - interval '1 minute'`,
    );
    const t = Date.now();
    for (const r of rows.rows) learn(fromRow(r), t);
    cursor = iso(now.rows[0]?.now ?? null) ?? cursor;
  };

  const incremental = async () => {
    if (cursor === undefined) return fullResync();
    const now = await db.query<{ now: Date | string }>('SELECT now() AS now');
    const rows = await db.query<RevocationRow>(
      `SELECT ${COLUMNS} FROM scopegate_revocations WHERE created_at > $1::timestamptz - interval '${POLL_LOOKBACK}'`,
      [cursor],
    );
    const t = Date.now();
    for (const r of rows.rows) learn(fromRow(r), t);
    cursor = iso(now.rows[0]?.now ?? null) ?? cursor;
  };

  const prune = async () => {
    const n = set.prune(Date.now());
    for (const [id, expiresMs] of announced) if (expiresMs < Date.now() - 120_000) announced.delete(id);
    // Rows are kept past expiry by the same margin as in memory (EXPIRY_MARGIN_MS).
    await db.query(`DELETE FROM scopegate_revocations WHERE expires_at < now() - interval '2 minutes'`);
    if (n > 0) log.debug({ pruned: n }, 'expired revocations pruned');
    await fullResync();
  };

  // Start: everything unexpired, or refuse to start (we cannot answer without knowing it).
  await fullResync();

  // Embedded PGlite is one process: no other replica can write, so there is nothing to poll.
  const needsPolling = bus !== undefined || db.kind === 'postgres';
  let pollTimer: NodeJS.Timeout | undefined;
  const schedulePoll = () => {
    if (closed || !needsPolling) return;
    if (pollTimer) clearTimeout(pollTimer);
    const ms = bus?.connected ? POLL_SAFETY_MS : POLL_DEGRADED_MS;
    pollTimer = setTimeout(() => void serial('poll', incremental).finally(schedulePoll), ms);
    pollTimer.unref();
  };
  schedulePoll();

  const pruneTimer = setInterval(() => void serial('prune', prune), PRUNE_MS);
  pruneTimer.unref();

  if (bus) {
    bus.on('revocation', (data, from) => {
      const r = parseRevocation(data);
      if (!r) return log.warn('ignoring malformed revocation message');
      learn(r, Date.now());
      // One line per revocation and replica: revocations are rare, and this is how an operator
      // (and the benchmark) sees when each replica started enforcing one.
      if (from !== bus.instanceId) log.info({ id: r.id, from }, 'revocation applied');
    });
    bus.onConnectionChange((up) => {
      // Back: re-read everything (messages sent while we were away are gone). Down: poll now.
      if (up) void serial('resync', fullResync);
      schedulePoll();
    });
  }

  const announce = async (r: Revocation) => {
    learn(r, Date.now());
    // A failed publish is not an error for the caller: the row is committed and every replica
    // reads it from the store within one poll.
    if (bus) await bus.publish('revocation', r);
    log.info({ id: r.id, kind: r.jti !== null ? 'token' : 'subject', by: r.by }, 'revoked');
    return r;
  };

  return {
    isRevoked: (claims) => set.isRevoked(claims),

    async revokeToken(jti, opts) {
      const expiresAt =
        opts.exp !== undefined && Number.isFinite(opts.exp)
          ? new Date((opts.exp + config.tokens.clockSkewS) * 1000).toISOString()
          : null;
      // Revoking twice is fine: the existing row is returned (the no-op update makes RETURNING work).
      const res = await db.query<RevocationRow>(
        `INSERT INTO scopegate_revocations (id, jti, reason, expires_at, revoked_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (jti) WHERE jti IS NOT NULL DO UPDATE SET jti = EXCLUDED.jti
         RETURNING ${COLUMNS}`,
        [randomUUID(), jti, opts.reason ?? null, expiresAt, opts.by],
      );
      const row = res.rows[0];
      if (!row) throw new Error('revocation insert returned no row');
      return announce(fromRow(row));
    },

    async revokeSubject(sub, opts) {
      // issued_before: the later of the database's clock and ours, so a clock behind the one
      // that stamped a token's iat cannot let that token through. expires_at stays null: tokens of a subject may come from trusted issuers whose lifetimes
      // we do not bound, so a subject revocation is kept.
      const res = await db.query<RevocationRow>(
        `INSERT INTO scopegate_revocations (id, sub, issued_before, reason, revoked_by)
         VALUES ($1, $2, greatest(now(), $5::timestamptz), $3, $4)
         RETURNING ${COLUMNS}`,
        [randomUUID(), sub, opts.reason ?? null, opts.by, new Date().toISOString()],
      );
      const row = res.rows[0];
      if (!row) throw new Error('revocation insert returned no row');
      return announce(fromRow(row));
    },

    async list() {
      const res = await db.query<RevocationRow>(
        `SELECT ${COLUMNS} FROM scopegate_revocations WHERE expires_at IS NULL OR expires_at > now()
         ORDER BY created_at DESC, id LIMIT ${LIST_LIMIT}`,
      );
      return res.rows.map(fromRow);
    },

    onRevocation(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },

    async close() {
      closed = true;
      listeners.clear();
      if (pollTimer) clearTimeout(pollTimer);
      clearInterval(pruneTimer);
      await serial('close', async () => {}); // waits for the runs already queued
    },
  };
}
