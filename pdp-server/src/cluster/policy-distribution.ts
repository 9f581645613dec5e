/**
 * Policy bundles shared by every replica. An uploaded bundle is stored (the store is the
 * truth), then announced on the cluster bus; every other replica reads the newest bundle from
 * the store and hands it to the policy engine. A replica starting later loads `latest()`.
 *
 * Announcements only say "something changed": a receiver always loads the newest bundle by
 * publish order (seq), never the one named in the message, so two quick uploads can never end
 * with a replica on the older one because its message or fetch arrived late. While the bus is
 * down (or absent, with Postgres), the newest revision is polled instead, and re-checked each
 * time the subscription comes back.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { Db } from '../store/db.js';
import type { ClusterBus } from './cluster-bus.js';
import { serialRunner } from './serial-runner.js';

export interface PolicyDistribution {
  /** Store a bundle (tar.gz bytes as produced by `opa build -t wasm`) with its revision and announce it to all replicas. */
  publish(revision: string, bundle: Buffer): Promise<void>;
  /** The newest stored bundle, if any (a replica starting later loads it). */
  latest(): Promise<{ revision: string; bundle: Buffer } | undefined>;
  /**
   * Called with each bundle announced by any other replica (including after a resync on Redis
   * reconnect / polling). Not called for this replica's own publish(): the caller loaded it.
   */
  onBundle(fn: (revision: string, bundle: Buffer) => void): void;
  close(): Promise<void>;
}

/** Poll interval for the newest revision while the bus is down or absent. */
export const POLICY_POLL_DEGRADED_MS = 1_000;
/** Poll interval while the bus is up (safety net only). */
export const POLICY_POLL_SAFETY_MS = 10_000;

const toBuffer = (b: Buffer | Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export async function createPolicyDistribution(
  db: Db,
  _config: Readonly<Config>,
  log: FastifyBaseLogger,
  bus?: ClusterBus,
): Promise<PolicyDistribution> {
  const listeners: Array<(revision: string, bundle: Buffer) => void> = [];
  /** seq of the newest bundle this replica has (published, loaded via latest(), or delivered). */
  let haveSeq = 0;
  let closed = false;

  const seqOf = (v: unknown): number => Number(v);

  const serial = serialRunner(
    () => closed,
    (what, err) => log.warn({ err: err.message, what }, 'policy sync failed; will retry'),
  );

  /** Deliver the newest stored bundle if it is newer than what this replica has. */
  const sync = async () => {
    // Nobody to hand a bundle to yet (the engine registers after loading latest()): leave
    // haveSeq alone so the bundle is delivered once someone listens.
    if (listeners.length === 0) return;
    const head = await db.query<{ revision: string; seq: string | number }>(
      'SELECT revision, seq FROM scopegate_policy_bundles ORDER BY seq DESC LIMIT 1',
    );
    const top = head.rows[0];
    if (!top || seqOf(top.seq) <= haveSeq) return;
    const full = await db.query<{ revision: string; bundle: Buffer | Uint8Array; seq: string | number }>(
      'SELECT revision, bundle, seq FROM scopegate_policy_bundles WHERE revision = $1',
      [top.revision],
    );
    const row = full.rows[0];
    if (!row || seqOf(row.seq) <= haveSeq) return;
    haveSeq = seqOf(row.seq);
    const bundle = toBuffer(row.bundle);
    log.info({ revision: row.revision }, 'policy bundle announced by another replica');
    for (const fn of listeners) {
      try {
        fn(row.revision, bundle);
      } catch (err) {
        log.error({ err: (err as Error).message, revision: row.revision }, 'policy bundle listener failed');
      }
    }
  };

  const needsPolling = bus !== undefined || db.kind === 'postgres';
  let pollTimer: NodeJS.Timeout | undefined;
  const schedulePoll = () => {
    if (closed || !needsPolling) return;
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(
      () => void serial('poll', sync).finally(schedulePoll),
      bus?.connected ? POLICY_POLL_SAFETY_MS : POLICY_POLL_DEGRADED_MS,
    );
    pollTimer.unref();
  };
  schedulePoll();

  if (bus) {
    bus.on('policy', (_data, from) => {
      if (from !== bus.instanceId) void serial('announce', sync);
    });
    bus.onConnectionChange((up) => {
      if (up) void serial('resync', sync);
      schedulePoll();
    });
  }

  return {
    async publish(revision, bundle) {
      // Publishing a stored revision again (a rollback) makes it the newest: it gets a new seq.
      const res = await db.query<{ seq: string | number }>(
        `INSERT INTO scopegate_policy_bundles (revision, bundle) VALUES ($1, $2)
         ON CONFLICT (revision) DO UPDATE SET seq = nextval('scopegate_policy_bundle_seq'), published_at = now()
         RETURNING seq`,
        [revision, bundle],
      );
      const seq = seqOf(res.rows[0]?.seq);
      if (seq > haveSeq) haveSeq = seq;
      if (bus) await bus.publish('policy', { revision, seq });
    },

    async latest() {
      const res = await db.query<{ revision: string; bundle: Buffer | Uint8Array; seq: string | number }>(
        'SELECT revision, bundle, seq FROM scopegate_policy_bundles ORDER BY seq DESC LIMIT 1',
      );
      const row = res.rows[0];
      if (!row) return undefined;
      // The caller loads what it gets here, so later syncs only deliver something newer.
      if (seqOf(row.seq) > haveSeq) haveSeq = seqOf(row.seq);
      return { revision: row.revision, bundle: toBuffer(row.bundle) };
    },

    onBundle(fn) {
      listeners.push(fn);
      // Catch up on anything published between latest() and now (e.g. while the engine was
      // loading what latest() returned).
      void serial('catch-up', sync);
    },

    async close() {
      closed = true;
      if (pollTimer) clearTimeout(pollTimer);
      await serial('close', async () => {}); // waits for the runs already queued
    },
  };
}
