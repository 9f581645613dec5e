/**
 * Read side of the decision log: filtered listing with keyset pagination, one decision,
 * the ordered timeline of one session, and a chronological scan for export.
 *
 * Keyset order is (time, decision_id) — the primary key — so a page never skips or repeats
 * rows while new ones arrive. Times are rendered with microseconds in UTC so a cursor
 * round-trips exactly.
 */
import { ScopegateError } from '../errors.js';
import type { Db } from './db.js';

export interface DecisionRecord {
  decision_id: string;
  time: string;
  event: string;
  instance: string | null;
  subject: string | null;
  issuer: string | null;
  jti: string | null;
  chain: string | null;
  step: string | null;
  session_id: string | null;
  shim: string | null;
  resource_kind: string;
  resource_name: string;
  request_summary: unknown;
  effect: string;
  reasons: string[];
  code: string | null;
  policy_revision: string;
  latency_us: number;
  cache_hit: boolean;
  approval_id: string | null;
}

export interface DecisionFilter {
  subject?: string | undefined;
  /** Resource name, or `kind:name`. */
  resource?: string | undefined;
  effect?: string | undefined;
  session_id?: string | undefined;
  chain?: string | undefined;
  event?: string | undefined;
  /** Inclusive lower bound (ISO time). */
  from?: string | undefined;
  /** Exclusive upper bound (ISO time). */
  to?: string | undefined;
}

const COLUMNS = `decision_id,
  to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS time,
  event, instance, subject, issuer, jti, chain, step, session_id, shim, resource_kind, resource_name,
  request_summary, effect, reasons, code, policy_revision, latency_us, cache_hit, approval_id`;

type Cursor = [time: string, decisionId: string];

export function encodeCursor(rec: Pick<DecisionRecord, 'time' | 'decision_id'>): string {
  return Buffer.from(JSON.stringify([rec.time, rec.decision_id])).toString('base64url');
}

export function decodeCursor(cursor: string): Cursor {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && !Number.isNaN(Date.parse(v[0]))) {
      return [v[0], v[1]];
    }
  } catch {
    // fall through
  }
  throw new ScopegateError('bad_request', 'The cursor is not valid.');
}

function toRecord(row: Record<string, unknown>): DecisionRecord {
  return { ...(row as unknown as DecisionRecord), latency_us: Number(row.latency_us) };
}

function where(filter: DecisionFilter, params: unknown[]): string[] {
  const clauses: string[] = [];
  const add = (sql: (p: string) => string, value: unknown) => {
    params.push(value);
    clauses.push(sql(`$${params.length}`));
  };
  if (filter.subject !== undefined) add((p) => `subject = ${p}`, filter.subject);
  if (filter.resource !== undefined) {
    const colon = filter.resource.indexOf(':');
    if (colon > 0) {
      add((p) => `resource_kind = ${p}`, filter.resource.slice(0, colon));
      add((p) => `resource_name = ${p}`, filter.resource.slice(colon + 1));
    } else add((p) => `resource_name = ${p}`, filter.resource);
  }
  if (filter.effect !== undefined) add((p) => `effect = ${p}`, filter.effect);
  if (filter.session_id !== undefined) add((p) => `session_id = ${p}`, filter.session_id);
  if (filter.chain !== undefined) add((p) => `chain = ${p}`, filter.chain);
  if (filter.event !== undefined) add((p) => `event = ${p}`, filter.event);
  if (filter.from !== undefined) add((p) => `time >= ${p}::timestamptz`, filter.from);
  if (filter.to !== undefined) add((p) => `time < ${p}::timestamptz`, filter.to);
  return clauses;
}

export async function listDecisions(
  db: Db,
  filter: DecisionFilter,
  page: { cursor?: string | undefined; limit: number; order: 'asc' | 'desc' },
): Promise<{ items: DecisionRecord[]; next_cursor: string | null }> {
  const params: unknown[] = [];
  const clauses = where(filter, params);
  if (page.cursor !== undefined) {
    const [time, id] = decodeCursor(page.cursor);
    params.push(time, id);
    const op = page.order === 'desc' ? '<' : '>';
    clauses.push(`(time, decision_id) ${op} ($${params.length - 1}::timestamptz, $${params.length})`);
  }
  params.push(page.limit + 1);
  const dir = page.order === 'desc' ? 'DESC' : 'ASC';
  const r = await db.query<Record<string, unknown>>(
    `SELECT ${COLUMNS} FROM decision_log ${clauses.length ? `WHERE ${clauses.join(' AND ')}` : ''}
      ORDER BY time ${dir}, decision_id ${dir} LIMIT $${params.length}`,
    params,
  );
  const rows = r.rows.map(toRecord);
  const more = rows.length > page.limit;
  const items = more ? rows.slice(0, page.limit) : rows;
  return { items, next_cursor: more ? encodeCursor(items.at(-1)!) : null };
}

/** All log rows carrying this decision id (normally one; approval events have their own ids). */
export async function getDecision(db: Db, decisionId: string): Promise<DecisionRecord | undefined> {
  const r = await db.query<Record<string, unknown>>(
    `SELECT ${COLUMNS} FROM decision_log WHERE decision_id = $1 ORDER BY time LIMIT 1`,
    [decisionId],
  );
  return r.rows[0] ? toRecord(r.rows[0]) : undefined;
}

/** Chronological scan in pages, for streaming export; bounded memory. */
export async function* scanDecisions(db: Db, filter: DecisionFilter, pageSize = 1000): AsyncGenerator<DecisionRecord> {
  let cursor: string | undefined;
  for (;;) {
    const page = await listDecisions(db, filter, { cursor, limit: pageSize, order: 'asc' });
    yield* page.items;
    if (page.next_cursor === null) return;
    cursor = page.next_cursor;
  }
}
