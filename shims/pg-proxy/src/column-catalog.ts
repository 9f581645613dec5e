/**
 * Names of result columns, looked up on the proxy's own upstream connection (never the
 * agent's, which the agent could have changed) and cached: RowDescription gives a table OID
 * and column number; masking rules name `schema.table.column`.
 */
import { LRUCache } from 'lru-cache';
import pg from 'pg';

export interface ColumnCatalog {
  /** `schema.table.column` for a table OID + attribute number, or undefined when there is none. */
  columnName(tableOid: number, column: number): Promise<string | undefined>;
  /** `columnName` answered from the cache only: the name, null for "no such column", undefined when not cached. */
  cachedColumnName?(tableOid: number, column: number): string | null | undefined;
  /** Columns COPY writes for `schema.table` without a column list, in order. */
  copyColumns(relation: string): Promise<string[] | undefined>;
  close(): Promise<void>;
}

export interface CatalogConnection {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string | undefined;
}

export function createColumnCatalog(conn: CatalogConnection, opts: { ttlMs?: number } = {}): ColumnCatalog {
  const pool = new pg.Pool({ ...conn, max: 2, idleTimeoutMillis: 30_000, options: '-c search_path=pg_catalog' });
  // A failing lookup must not take the process down; the caller masks on failure.
  pool.on('error', () => undefined);
  // Table OIDs are stable for a table's life; the TTL covers drop-and-recreate with OID reuse.
  const ttl = opts.ttlMs ?? 60_000;
  // Ages are read against a clock cached for `ttlResolution` ms: at lru-cache's default (1 ms)
  // that costs a timer every millisecond under load, as names are looked up for every result.
  // An entry may then live up to that much past its ttl.
  const ttlResolution = Math.min(1000, Math.max(1, Math.floor(ttl / 60)));
  // Keyed by OID·2¹⁶ + attribute number (a safe integer: OIDs are 32-bit, attnums 16-bit), not a string built per lookup.
  const names = new LRUCache<number, { name: string | null }>({ max: 10_000, ttl, ttlResolution });
  const nameKey = (tableOid: number, column: number): number => tableOid * 65536 + (column & 0xffff);
  const copies = new LRUCache<string, { cols: string[] | null }>({ max: 1_000, ttl, ttlResolution });
  return {
    async columnName(tableOid, column) {
      const key = nameKey(tableOid, column);
      const hit = names.get(key);
      if (hit) return hit.name ?? undefined;
      const r = await pool.query<{ name: string }>(
        `SELECT n.nspname || '.' || c.relname || '.' || a.attname AS name
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE a.attrelid = $1 AND a.attnum = $2 AND NOT a.attisdropped`,
        [tableOid, column],
      );
      const name = r.rows[0]?.name ?? null;
      names.set(key, { name });
      return name ?? undefined;
    },
    cachedColumnName(tableOid, column) {
      return names.get(nameKey(tableOid, column))?.name;
    },
    async copyColumns(relation) {
      const hit = copies.get(relation);
      if (hit) return hit.cols ?? undefined;
      const dot = relation.indexOf('.');
      const r = await pool.query<{ attname: string }>(
        `SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          ORDER BY a.attnum`,
        [relation.slice(0, dot), relation.slice(dot + 1)],
      );
      const cols = r.rows.length ? r.rows.map((x) => `${relation}.${x.attname}`) : null;
      copies.set(relation, { cols });
      return cols ?? undefined;
    },
    async close() {
      await pool.end();
    },
  };
}
