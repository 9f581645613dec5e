/**
 * A cache of statement summaries keyed by the text with its constants blanked out
 * (literal-key.ts), shared by all sessions of one proxy process. Agents and ORMs send the
 * same statement shapes over and over with different constants; parsing each with
 * libpg-query and walking the tree is most of the proxy's per-statement work.
 *
 * A summary is stored only when it is provably independent of the replaced constants and
 * of the session, checked against the real parse of the text that fills the entry:
 *  - every replaced literal token is an `A_Const` node of the tree (found by its location;
 *    a negated number's constant sits at the `-` before it). The summariser never reads
 *    constant values (it walks into A_Const only to find nothing), so another text with the
 *    same key — the same tokens, different constant values of the same lexical class —
 *    has the same tree shape and the same summary and fingerprint;
 *  - every top-level statement is a plain SELECT, INSERT, UPDATE or DELETE (or transaction
 *    control: BEGIN, COMMIT/END, ROLLBACK, SAVEPOINT…), none uses
 *    WHERE CURRENT OF (a cursor name), and the summary neither read nor changed the
 *    session's prepared statements or cursors.
 * Anything else goes through the full path every time. `text_sha256` is not cached: the
 * caller hashes the exact text.
 */
import { literalKey, type LiteralKey } from './literal-key.js';
import { NO_CHANGES, summarizeTraced, type SessionObjects, type SummaryResult, type TracedSummary } from './sql-summary.js';
import type { SqlStatement } from '../../../pdp-server/src/contract.js';

/**
 * Statement kinds whose summary can depend on nothing but the text (see above). Transaction
 * control is here too: its summary is the command named by the statement's kind and nothing
 * else (the Walker returns at once); a literal in one (`PREPARE TRANSACTION 'gid'`) is not an
 * A_Const, so such texts are never stored.
 */
const CACHEABLE_TYPES = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'TransactionStmt']);
/** Texts longer than this are not cached (bounds the cache's memory together with `maxEntries`). */
const MAX_TEXT_LENGTH = 8192;

/** A stored summary, as handed to every hit (the same frozen object each time: nothing per hit is allocated). */
type Entry = Readonly<Extract<SummaryResult, { ok: true }>>;

function entry(statements: SqlStatement[], fingerprint: string): Entry {
  return Object.freeze({ ok: true as const, statements, fingerprint, apply: NO_CHANGES });
}

export interface SummaryCacheStats {
  hits: number;
  misses: number;
  /** Texts the key lexer gave up on, or whose summary was not reusable. */
  uncacheable: number;
  size: number;
}

export class SummaryCache {
  /** Insertion-ordered Map as an LRU: a hit moves the entry to the end, eviction takes the first. */
  readonly #entries = new Map<string, Entry>();
  /** The key of the entry last stored or hit, which is already the newest: a hit on it needs no move. */
  #newest: string | undefined;
  readonly #stats = { hits: 0, misses: 0, uncacheable: 0 };

  constructor(readonly maxEntries: number) {}

  summarize(sql: string, session: SessionObjects): SummaryResult {
    const k = this.maxEntries > 0 && sql.length <= MAX_TEXT_LENGTH ? literalKey(sql) : undefined;
    if (!k) {
      this.#stats.uncacheable++;
      return summarizeTraced(sql, session).result;
    }
    const hit = this.#entries.get(k.key);
    if (hit) {
      this.#stats.hits++;
      if (k.key !== this.#newest) {
        this.#entries.delete(k.key);
        this.#entries.set(k.key, hit);
        this.#newest = k.key;
      }
      return hit;
    }
    const traced = summarizeTraced(sql, session);
    if (traced.result.ok && reusable(sql, traced, k)) {
      this.#stats.misses++;
      this.#entries.set(k.key, entry(traced.result.statements, traced.result.fingerprint));
      this.#newest = k.key;
      if (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
    } else this.#stats.uncacheable++;
    return traced.result;
  }

  stats(): SummaryCacheStats {
    return { ...this.#stats, size: this.#entries.size };
  }
}

/** May this summary stand for every text with the same literal key? (the checks in the header) */
export function reusable(sql: string, traced: TracedSummary, k: LiteralKey): boolean {
  if (!traced.result.ok || !traced.tree || traced.changes !== 0 || traced.sessionRead) return false;
  if (traced.types.length === 0 || !traced.types.every((t) => CACHEABLE_TYPES.has(t))) return false;
  const consts = new Set<number>();
  if (!collectConstants(traced.tree, consts, 0)) return false;
  return k.literals.every((lit) => {
    if (consts.has(lit.start)) return true;
    // `-5`, `- 5`: the parser folds the sign into the constant and places it at the `-`.
    const minus = lit.kind === 's' ? -1 : minusBefore(sql, lit.start);
    return minus >= 0 && consts.has(minus);
  });
}

/**
 * Locations of every A_Const in the tree; false when the tree has something that makes it
 * unfit (WHERE CURRENT OF) or is too deep to judge.
 */
function collectConstants(n: unknown, out: Set<number>, depth: number): boolean {
  if (depth > 4000) return false;
  if (Array.isArray(n)) {
    for (const x of n) if (!collectConstants(x, out, depth + 1)) return false;
    return true;
  }
  if (typeof n !== 'object' || n === null) return true;
  for (const [key, value] of Object.entries(n as Record<string, unknown>)) {
    if (key === 'CurrentOfExpr') return false;
    if (key === 'A_Const') {
      const loc = (value as { location?: unknown }).location;
      if (typeof loc === 'number' && loc >= 0) out.add(loc);
      continue;
    }
    if (typeof value === 'object' && value !== null && !collectConstants(value, out, depth + 1)) return false;
  }
  return true;
}

/** Position of a `-` directly before the token at `start` (whitespace between allowed), or -1. */
function minusBefore(sql: string, start: number): number {
  let i = start - 1;
  while (i >= 0 && /\s/.test(sql[i] as string)) i--;
  return sql[i] === '-' ? i : -1;
}
