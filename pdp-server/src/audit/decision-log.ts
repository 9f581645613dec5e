/**
 * The decision log writer. `append` is synchronous and cheap: it encodes the entry once as a
 * COPY text row, journals that row to the local spool (one write(2) per event-loop turn for
 * all the turn's rows; callers answer after `journaled()`, so an answered decision survives a
 * kill -9) and, on Postgres, streams the same row into a `COPY decision_log FROM
 * STDIN` held open for the active spool segment; the COPY commits when the segment closes
 * (every `commitIntervalMs` or `batchSize` rows) and the segment file is then deleted. A
 * steady trickle of rows costs the database far less at once than a burst per batch, which
 * is what kept the decide p99 up (bench/decision-log). PGlite, a backlog after an outage and
 * any segment whose COPY failed go through the batch drain instead: whole segments, COPY
 * for fresh ones and an idempotent multi-row INSERT for anything that may be partly stored.
 * When the database is unreachable the segments are fsync'ed and kept; the drain retries
 * with backoff and replays them in order once it returns. Replay is exactly-once: rows keep
 * their original `time`, and (time, decision_id) is the primary key, so a segment inserted
 * twice (crash between COMMIT and unlink) adds nothing the second time.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { CopyStream, Db } from '../store/db.js';
import { DecisionPartitions, utcDay } from '../store/decision-partitions.js';
import { COPY_SQL, copyLine } from './copy-format.js';
import { DecisionSpool, resolveMemoryDir, type Segment } from './decision-spool.js';

export interface DecisionLogEntry {
  decision_id: string;
  time: string /* ISO */;
  subject: string | null;
  issuer: string | null;
  jti: string | null;
  chain: string | null;
  step: string | null;
  session_id: string | null;
  shim: string | null;
  resource_kind: string;
  resource_name: string;
  request_summary: unknown /* already masked by the decide pipeline */;
  effect: 'allow' | 'deny' | 'approval_required';
  reasons: string[];
  code: string | null;
  policy_revision: string;
  latency_us: number;
  cache_hit: boolean;
  approval_id: string | null;
  event?: string /* 'decision' | 'approval.requested' | 'approval.approved' | ... */;
}

export interface DecisionLog {
  /**
   * Queues the entry for the spool's journal and the database. Never throws. The journal
   * write happens at the end of the event-loop turn, grouped with the turn's other entries:
   * answer only after `journaled()`.
   */
  append(entry: DecisionLogEntry): void;
  /**
   * Resolves once every entry appended so far is journaled in the spool. The decide pipeline
   * answers only after that, so an answered decision survives a crash of the process.
   */
  journaled(): Promise<void>;
  /** Everything appended so far is durable (committed to the database, or fsync'ed in the spool). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface DecisionLogOptions {
  /** Rows per INSERT statement. */
  batchSize: number;
  /** Longest an entry waits in memory before its segment is written to the database. */
  flushIntervalMs: number;
  /**
   * Stream rows into an open COPY as they are appended (Postgres only), committing every
   * `commitIntervalMs` or `batchSize` rows; otherwise (or while replaying a backlog) whole
   * segments are written every `flushIntervalMs`.
   */
  stream: boolean;
  commitIntervalMs: number;
  /** How long streamed rows gather before they are written to the COPY in one message. */
  streamWriteMs: number;
  /** Keep at most this many queued entries in memory; older segments are re-read from disk. */
  maxBufferedEntries: number;
  retryMinMs: number;
  retryMaxMs: number;
  /** How often partitions are created ahead / dropped after retention. */
  maintenanceIntervalMs: number;
  /** A request summary larger than this (serialised) is replaced by a marker. */
  maxSummaryBytes: number;
}

export const DEFAULT_DECISION_LOG_OPTIONS: DecisionLogOptions = {
  batchSize: 5000,
  flushIntervalMs: 50,
  stream: true,
  commitIntervalMs: 250,
  streamWriteMs: 50,
  maxBufferedEntries: 100_000,
  retryMinMs: 100,
  retryMaxMs: 5_000,
  maintenanceIntervalMs: 3_600_000,
  maxSummaryBytes: 64 * 1024,
};

/** More queued segments than this is a backlog: new segments are then written to disk. */
const BACKLOG_SEGMENTS = 4;

/** Columns written, in the order of the recordset definition below. */
const INSERT_SQL = `
INSERT INTO decision_log (time, decision_id, event, instance, subject, issuer, jti, chain, step, session_id, shim,
  resource_kind, resource_name, request_summary, effect, reasons, code, policy_revision, latency_us, cache_hit, approval_id)
SELECT time, decision_id, coalesce(event, 'decision'), instance, subject, issuer, jti, chain, step, session_id, shim,
  resource_kind, resource_name, request_summary, effect, coalesce(reasons, '{}'), code, policy_revision,
  coalesce(latency_us, 0), coalesce(cache_hit, false), approval_id
FROM jsonb_to_recordset($1::jsonb) AS x(time timestamptz, decision_id text, event text, instance text, subject text,
  issuer text, jti text, chain text, step text, session_id text, shim text, resource_kind text, resource_name text,
  request_summary jsonb, effect text, reasons text[], code text, policy_revision text, latency_us bigint,
  cache_hit boolean, approval_id text)
ON CONFLICT DO NOTHING`;

/** A deep copy with every NUL character (in strings and object keys) replaced by U+FFFD. */
function withoutNul<T>(v: T): T {
  const clean = (x: unknown): unknown => {
    if (typeof x === 'string') return x.replaceAll('\0', '\uFFFD');
    if (Array.isArray(x)) return x.map(clean);
    if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k.replaceAll('\0', '\uFFFD'), clean(y)]));
    return x;
  };
  return clean(v) as T;
}

/** `2024-05-01T13:00:00.000Z`: the shape `new Date().toISOString()` gives, whose first ten characters are its UTC day. */
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The COPY a segment's rows stream into while it is the active segment. */
interface LiveCopy {
  readonly seg: Segment;
  readonly copy: CopyStream;
  /** Rows not yet handed to the COPY; written every `streamWriteMs` in one message. */
  rows: string;
  /**
   * A row could not be streamed (unknown day, malformed entry): the segment is replayed with
   * the idempotent INSERT after the COPY, which skips the rows the COPY already stored.
   */
  broken: boolean;
}

/** Stats for tests, health and the benchmark. */
export interface DecisionLogStats {
  appended: number;
  inserted: number;
  duplicates: number;
  pendingSegments: number;
  outage: boolean;
  tornLines: number;
}

export interface DecisionLogWriter extends DecisionLog {
  stats(): DecisionLogStats;
}

export async function createDecisionLog(
  db: Db,
  config: Readonly<Config>,
  log: FastifyBaseLogger,
  options: Partial<DecisionLogOptions> = {},
): Promise<DecisionLogWriter> {
  const opts: DecisionLogOptions = { ...DEFAULT_DECISION_LOG_OPTIONS, ...options };
  const partitions = new DecisionPartitions(db);
  // The database being down at start is an outage like any other: entries go to the spool.
  await partitions.ensureAhead().catch((err: Error) => log.warn({ err: err.message }, 'decision log partitions not created yet'));
  await partitions.dropExpired(config.logRetentionDays).catch((err: Error) => log.warn({ err: err.message }, 'decision log retention failed'));

  const spool = new DecisionSpool(
    config.dataDir,
    resolveMemoryDir(config.dataDir, config.spoolMemoryDir, (msg) => log.warn(msg)),
  );
  let lastWriteErrorLog = 0;
  spool.onWriteError = (err) => {
    // Rate-limited: a full disk would otherwise log once per decision.
    if (Date.now() - lastWriteErrorLog > 10_000) {
      lastWriteErrorLog = Date.now();
      log.error({ err: err.message }, 'decision spool write failed; entries kept in memory only');
    }
  };

  const pending: Segment[] = spool.recover();
  if (pending.length > 0) log.info({ segments: pending.length }, 'replaying spooled decision log segments');

  const stats: DecisionLogStats = { appended: 0, inserted: 0, duplicates: 0, pendingSegments: 0, outage: false, tornLines: 0 };
  let buffered = 0;
  let closed = false;
  let tickTimer: NodeJS.Timeout | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  let retryDelay = opts.retryMinMs;
  let draining: Promise<void> | null = null;
  let rotating: Promise<void> = Promise.resolve();
  let live: LiveCopy | null = null;
  let liveFlushScheduled = false;
  /** Live COPYs being committed; flush() waits for them. */
  const ending = new Set<Promise<void>>();

  const maintenance = setInterval(() => {
    void (async () => {
      await partitions.ensureAhead();
      const dropped = await partitions.dropExpired(config.logRetentionDays);
      if (dropped.length > 0) log.info({ dropped }, 'dropped expired decision log partitions');
    })().catch((err: Error) => log.warn({ err: err.message }, 'decision log maintenance failed'));
  }, opts.maintenanceIntervalMs);
  maintenance.unref();

  /** The summary as stored (a marker when too large), with its JSON text: serialised once. */
  function storedSummary(e: DecisionLogEntry): { value: unknown; json: string } | null {
    if (e.request_summary === undefined || e.request_summary === null) return null;
    const json = JSON.stringify(e.request_summary);
    if (json === undefined) return null;
    if (json.length <= opts.maxSummaryBytes) return { value: e.request_summary, json };
    const marker = { truncated: true, bytes: json.length };
    return { value: marker, json: JSON.stringify(marker) };
  }

  /** A row for the INSERT path (the whole batch goes through jsonb_to_recordset as JSON). */
  function toRow(e: DecisionLogEntry): Record<string, unknown> {
    return { ...e, request_summary: storedSummary(e)?.value ?? null, instance: config.instanceId };
  }

  const copyRow = (e: DecisionLogEntry): string => copyLine(e, config.instanceId, storedSummary(e)?.json ?? null);

  /**
   * Fresh segments go in with COPY (several times faster than INSERT on Postgres); decision
   * ids are new UUIDs, so a first attempt cannot conflict. Anything that may already be
   * partly stored — a retry after an error, a segment recovered at start — takes the
   * idempotent INSERT … ON CONFLICT DO NOTHING, which keeps replay exactly-once.
   */
  async function insertChunk(entries: DecisionLogEntry[], fresh: boolean): Promise<void> {
    await partitions.ensure(entries.map((e) => utcDay(e.time)));
    if (fresh && db.copyFrom) {
      try {
        await db.copyFrom(COPY_SQL, entries.map(copyRow).join(''));
        stats.inserted += entries.length;
        return;
      } catch (err) {
        // A duplicate (the same entry appended twice) fails the whole COPY; the idempotent
        // path below stores the rest. Any other error is an outage, handled by the caller.
        if ((err as { code?: string }).code !== '23505') throw err;
      }
    }
    const r = await db.query(INSERT_SQL, [JSON.stringify(entries.map(toRow))]);
    stats.inserted += r.rowCount;
    stats.duplicates += entries.length - r.rowCount;
  }

  /** Write pending segments to the database in order; stop at the first failure. */
  async function drainOnce(): Promise<void> {
    while (pending.length > 0) {
      const seg = pending[0]!;
      let entries = seg.entries;
      const fresh = !seg.attempted;
      seg.attempted = true;
      if (entries === null) {
        const read = await spool.read(seg);
        entries = read.entries;
        stats.tornLines += read.torn;
      }
      for (let i = 0; i < entries.length; i += opts.batchSize) {
        const chunk = entries.slice(i, i + opts.batchSize);
        // An entry that cannot be stored (bad time) would block the queue forever: log and skip it.
        const valid = chunk.filter((e) => {
          const ok = typeof e.time === 'string' && !Number.isNaN(Date.parse(e.time)) && typeof e.decision_id === 'string';
          if (!ok) log.error({ decision_id: e.decision_id }, 'decision log entry is malformed; skipped');
          return ok;
        });
        if (valid.length > 0) await insertChunk(valid, fresh);
      }
      pending.shift();
      if (seg.entries !== null) buffered -= seg.entries.length;
      await spool.remove(seg);
    }
  }

  function drain(): Promise<void> {
    if (draining) return draining;
    draining = (async () => {
      try {
        await drainOnce();
        if (stats.outage) log.info('decision log database reachable again; spool replayed');
        stats.outage = false;
        chooseTier();
        retryDelay = opts.retryMinMs;
      } catch (err) {
        if (!stats.outage) log.error({ err: (err as Error).message }, 'decision log database unreachable; spooling to disk');
        stats.outage = true;
        chooseTier();
        // Everything not yet in the database must now survive a machine crash: segments in
        // the memory tier move to disk, those on disk are fsync'ed.
        for (const seg of pending) await spool.sync(seg).catch(() => {});
        evictMemory();
        scheduleRetry();
      } finally {
        draining = null;
      }
    })();
    return draining;
  }

  /**
   * New segments go to disk during an outage and while a backlog builds up (the database
   * takes rows slower than they come): the memory tier holds only what is about to be
   * committed, so it stays small.
   */
  function chooseTier(): void {
    spool.durable = stats.outage || pending.length > BACKLOG_SEGMENTS;
  }

  function scheduleRetry(): void {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      void drain();
    }, retryDelay);
    retryTimer.unref();
    retryDelay = Math.min(retryDelay * 2, opts.retryMaxMs);
  }

  /** Drop in-memory copies of queued segments (newest first) once over budget; they are on disk. */
  function evictMemory(): void {
    for (let i = pending.length - 1; i > 0 && buffered > opts.maxBufferedEntries; i--) {
      const seg = pending[i]!;
      if (seg.entries !== null && seg.fileIntact) {
        buffered -= seg.entries.length;
        seg.entries = null;
      }
    }
  }

  /**
   * Close the active segment: a streamed one commits its COPY, any other is queued for the
   * drain; in an outage it is fsync'ed first (group commit to disk). The spool switches to a
   * new segment synchronously, so no entry can land in a segment after its COPY was ended.
   */
  function rotate(): Promise<void> {
    if (tickTimer) {
      clearTimeout(tickTimer);
      tickTimer = null;
    }
    const cur = live;
    live = null;
    const rotated = spool.rotate(stats.outage);
    if (cur) writeLiveRows(cur);
    rotating = rotating.then(async () => {
      const seg = await rotated;
      if (seg && cur?.seg === seg) endLive(cur);
      else if (seg) pending.push(seg);
      chooseTier();
      evictMemory();
    });
    return rotating;
  }

  /** Streaming needs Postgres and an empty queue: a backlog is replayed first, in order. */
  function canStream(): boolean {
    return opts.stream && db.openCopy !== undefined && !stats.outage && pending.length === 0 && draining === null && !closed;
  }

  function streamRow(l: LiveCopy, e: DecisionLogEntry, line: string): void {
    if (l.broken) return;
    const ok = typeof e.decision_id === 'string' && typeof e.time === 'string' && ISO_UTC.test(e.time) && partitions.has(e.time.slice(0, 10));
    if (!ok) {
      l.broken = true;
      return;
    }
    l.rows += line;
    // Rows go to the database every streamWriteMs, not every event-loop turn: each write is a
    // syscall that wakes the backend, and per-turn writes cost the PDP more than the rows. At
    // a few thousand decisions a second a write still cost the PDP ~150 µs (code run too
    // seldom to be optimised, the socket send and the backend's wakeup), whatever its size:
    // every 10 ms that was ~6 µs per decision, every 50 ms ~1 µs. The rows become visible at
    // the commit (commitIntervalMs) either way.
    if (!liveFlushScheduled) {
      liveFlushScheduled = true;
      setTimeout(() => {
        liveFlushScheduled = false;
        if (live) writeLiveRows(live);
      }, opts.streamWriteMs).unref();
    }
  }

  function writeLiveRows(l: LiveCopy): void {
    if (l.rows === '') return;
    l.copy.write(l.rows);
    l.rows = '';
  }

  /** Commit a streamed segment; if that fails (or a row was left out) replay it idempotently. */
  function endLive(l: LiveCopy): void {
    const seg = l.seg;
    const done = (async () => {
      let failure: Error | undefined;
      await l.copy.end().catch((err: Error) => {
        failure = err;
      });
      if (!failure && !l.broken) {
        stats.inserted += seg.count;
        if (seg.entries !== null) buffered -= seg.entries.length;
        await spool.remove(seg).catch((err: Error) => log.warn({ err: err.message }, 'decision spool segment not removed'));
        return;
      }
      // Some rows may be stored (the COPY may have committed before the error reached us):
      // only the idempotent INSERT may touch this segment from now on.
      seg.attempted = true;
      pending.push(seg);
      chooseTier();
      if (!stats.outage) await drain();
    })();
    ending.add(done);
    void done.finally(() => ending.delete(done));
  }

  function tick(): void {
    void rotate().then(() => {
      if (!stats.outage) return drain();
      return undefined;
    });
  }

  const writer: DecisionLogWriter = {
    append(entry) {
      if (closed) {
        log.error({ decision_id: entry.decision_id }, 'decision log appended after close');
        return;
      }
      try {
        // Encoded once: the spool journals this line and the live COPY streams it.
        let line = copyRow(entry);
        // Postgres stores no NUL character in text or jsonb; one would fail every write of
        // its segment and stall the log behind it. Rare, so checked on the encoded line.
        if (line.includes('\0') || line.includes('\\u0000')) {
          entry = withoutNul(entry);
          line = copyRow(entry);
        }
        spool.append(entry, line);
        stats.appended += 1;
        const seg = spool.activeSegment;
        if (live === null && seg !== null && seg.count === 1 && seg.fileIntact && canStream()) {
          live = { seg, copy: db.openCopy!(COPY_SQL), rows: '', broken: false };
          // A streamed segment keeps no entries in memory: they would survive every young-GC
          // until the commit and make each one slower. Should its COPY fail, the segment is
          // replayed from its spool file.
          seg.entries = null;
        }
        if (live !== null && live.seg === seg) streamRow(live, entry, line);
        else buffered += 1;
        if (spool.activeCount >= opts.batchSize) tick();
        else if (tickTimer === null) {
          tickTimer = setTimeout(tick, live !== null ? opts.commitIntervalMs : opts.flushIntervalMs);
          tickTimer.unref();
        }
      } catch (err) {
        // append must never break the decision path.
        log.error({ err: (err as Error).message }, 'decision log append failed');
      }
    },
    async flush() {
      await rotate();
      while (ending.size > 0) await Promise.all([...ending]);
      // A drain already running may have finished its loop just before our segment was queued.
      for (let i = 0; i < 100 && pending.length > 0; i++) {
        await drain();
        if (stats.outage) break;
      }
      // In an outage the drain stops at the first failure; what is left must be on disk.
      for (const seg of pending) await spool.sync(seg);
    },
    async close() {
      if (closed) return;
      await writer.flush();
      closed = true;
      clearInterval(maintenance);
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      spool.closeSync();
    },
    journaled: () => spool.journaled(),
    stats() {
      return { ...stats, pendingSegments: pending.length };
    },
  };

  chooseTier();
  if (pending.length > 0) void drain();
  return writer;
}

/** The log used when SCOPEGATE_DECISION_LOG=false: decisions are not recorded. */
export function createDisabledDecisionLog(): DecisionLog {
  return { append: () => {}, journaled: async () => {}, async flush() {}, async close() {} };
}
