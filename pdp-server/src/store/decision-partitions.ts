/**
 * Daily partitions of `decision_log`: created ahead of the clock (and on demand for the day of
 * any row being written, e.g. a spooled entry from yesterday), and dropped once they are older
 * than the retention period. Partition bounds are UTC days; names are `decision_log_pYYYYMMDD`.
 */
import type { Db } from './db.js';

const DAY_MS = 86_400_000;
const PARTITION_RE = /^decision_log_p(\d{4})(\d{2})(\d{2})$/;
/** Serialises partition DDL between replicas that start or roll over the day together. */
const PARTITION_LOCK = 727274010;

/** `2024-05-01T13:00:00Z` → `2024-05-01` (UTC). */
export function utcDay(time: string | Date): string {
  const d = typeof time === 'string' ? new Date(time) : time;
  if (Number.isNaN(d.getTime())) throw new RangeError(`invalid time ${String(time)}`);
  return d.toISOString().slice(0, 10);
}

function nextDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS).toISOString().slice(0, 10);
}

export function partitionName(day: string): string {
  return `decision_log_p${day.replaceAll('-', '')}`;
}

export class DecisionPartitions {
  /** Days known to have a partition; a cache so the hot path issues no DDL. */
  private readonly known = new Set<string>();

  constructor(private readonly db: Db) {}

  /** A partition for `day` is known to exist (no query: the hot path asks this per row). */
  has(day: string): boolean {
    return this.known.has(day);
  }

  /** Make sure a partition exists for each of `days` (YYYY-MM-DD, UTC). */
  async ensure(days: Iterable<string>): Promise<void> {
    const missing = [...new Set(days)].filter((d) => !this.known.has(d));
    if (missing.length === 0) return;
    await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [PARTITION_LOCK]);
      for (const day of missing) {
        if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new RangeError(`invalid day ${day}`);
        // Identifiers and bounds come from a validated date, never from user input.
        await tx.query(
          `CREATE TABLE IF NOT EXISTS ${partitionName(day)} PARTITION OF decision_log ` +
            `FOR VALUES FROM ('${day} 00:00:00+00') TO ('${nextDay(day)} 00:00:00+00')`,
        );
      }
    });
    for (const d of missing) this.known.add(d);
  }

  /** Partitions for today and the next `aheadDays` days. */
  async ensureAhead(now: Date = new Date(), aheadDays = 2): Promise<void> {
    const days: string[] = [];
    for (let i = 0; i <= aheadDays; i++) days.push(utcDay(new Date(now.getTime() + i * DAY_MS)));
    await this.ensure(days);
  }

  /** Existing partition days, oldest first. */
  async list(): Promise<string[]> {
    const r = await this.db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'decision_log' AND p.relnamespace = to_regnamespace(current_schema())::oid`,
    );
    return r.rows
      .map((row) => PARTITION_RE.exec(row.name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => `${m[1]}-${m[2]}-${m[3]}`)
      .sort();
  }

  /**
   * Drop every partition whose whole day lies before `now - retentionDays`. Returns the days
   * dropped. Dropping a partition is O(1), unlike DELETE, and leaves no bloat.
   */
  async dropExpired(retentionDays: number, now: Date = new Date()): Promise<string[]> {
    const cutoff = utcDay(new Date(now.getTime() - retentionDays * DAY_MS));
    const dropped: string[] = [];
    for (const day of await this.list()) {
      if (nextDay(day) > cutoff) continue;
      await this.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [PARTITION_LOCK]);
        await tx.query(`DROP TABLE IF EXISTS ${partitionName(day)}`);
      });
      this.known.delete(day);
      dropped.push(day);
    }
    return dropped;
  }
}
