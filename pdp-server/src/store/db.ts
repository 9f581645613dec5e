/**
 * The durable store behind the decision log, revocations, approvals and policy bundles:
 * Postgres (node-postgres pool) when DATABASE_URL is set, embedded PGlite in the data folder
 * otherwise. Both speak the same SQL and run the same versioned migrations.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/**
 * One `COPY … FROM STDIN` kept open while rows arrive, so the database ingests a steady
 * trickle instead of a burst per batch; the rows commit together when it ends.
 */
export interface CopyStream {
  /** Queue rows in COPY text format. Never throws: a failure surfaces in `end()`. */
  write(rows: string): void;
  /** Finish the COPY: resolves once its rows are committed, rejects if any step failed. */
  end(): Promise<void>;
}

export interface Db {
  readonly kind: 'postgres' | 'pglite';
  /** One parameterised statement. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * `COPY … FROM STDIN` with text-format data (Postgres only: PGlite has no COPY from a
   * client stream). The bulk path of the decision log.
   */
  copyFrom?(copySql: string, data: string): Promise<void>;
  /** Open a streaming `COPY … FROM STDIN` on its own connection (Postgres only). */
  openCopy?(copySql: string): CopyStream;
  /** Run `fn` on one connection inside BEGIN/COMMIT (ROLLBACK on throw). */
  transaction<T>(fn: (tx: Pick<Db, 'query'>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

export async function openDb(
  config: Pick<Readonly<Config>, 'databaseUrl' | 'dataDir'>,
  log?: FastifyBaseLogger,
): Promise<Db> {
  if (config.databaseUrl) return openPostgres(config.databaseUrl, log);
  return openPglite(path.join(config.dataDir, 'pglite'));
}

export async function openPostgres(url: string, log?: FastifyBaseLogger): Promise<Db> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 8, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 5_000 });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', (err) => log?.warn({ err: err.message }, 'postgres idle client error'));
  const db: Db = {
    kind: 'postgres',
    async query<R>(text: string, params?: readonly unknown[]) {
      const r = await pool.query(text, params as unknown[] | undefined);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    },
    async exec(sql) {
      await pool.query(sql);
    },
    async copyFrom(copySql, data) {
      const { from } = await loadCopyStreams();
      const client = await pool.connect();
      // A server that dies mid-COPY also emits 'error' on the checked-out client; the failure
      // reaches the caller through the pipeline, so the event only needs a listener.
      const ignore = () => {};
      client.on('error', ignore);
      let failure: Error | undefined;
      try {
        await pipeline(Readable.from([data]), client.query(from(copySql)));
      } catch (err) {
        failure = err as Error;
        throw err;
      } finally {
        client.off('error', ignore);
        client.release(failure); // a failed connection is destroyed, not reused
      }
    },
    openCopy(copySql) {
      return openCopyStream(pool, copySql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      const ignore = () => {};
      client.on('error', ignore);
      let failure: Error | undefined;
      try {
        await client.query('BEGIN');
        const out = await fn({
          async query<R>(text: string, params?: readonly unknown[]) {
            const r = await client.query(text, params as unknown[] | undefined);
            return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
          },
        } as Pick<Db, 'query'>);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        failure = err as Error;
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.off('error', ignore);
        client.release(failure);
      }
    },
    async close() {
      await pool.end();
    },
  };
  return db;
}

/**
 * pg-copy-streams, loaded on first use (PGlite never needs it) and only once: each dynamic
 * import() goes through the module loader's hooks again (tsx's, under `npm start`), which
 * held the event loop for about half a millisecond at every commit of the live COPY.
 */
let copyStreams: Promise<typeof import('pg-copy-streams')> | undefined;
const loadCopyStreams = () => (copyStreams ??= import('pg-copy-streams'));

/** See `CopyStream`; rows written before the connection is ready wait in memory. */
function openCopyStream(pool: import('pg').Pool, copySql: string): CopyStream {
  const queued: string[] = [];
  let stream: Writable | undefined;
  let failure: Error | undefined;
  const ignore = () => {};
  const ready = (async () => {
    const { from } = await loadCopyStreams();
    const client = await pool.connect();
    // A server that dies mid-COPY also emits 'error' on the client; the stream reports it.
    client.on('error', ignore);
    const s = client.query(from(copySql));
    s.on('error', (err: Error) => {
      failure ??= err;
    });
    for (const rows of queued.splice(0)) s.write(rows);
    stream = s; // from here on write() goes straight to the stream
    return { client, s };
  })();
  // A connection failure is reported by end(); nobody else awaits `ready`.
  ready.catch((err: Error) => {
    failure ??= err;
  });
  return {
    write(rows) {
      if (failure) return;
      if (stream) stream.write(rows);
      else queued.push(rows);
    },
    async end() {
      const { client, s } = await ready;
      try {
        if (failure) throw failure;
        s.end();
        await finished(s);
        if (failure) throw failure;
      } catch (err) {
        failure ??= err as Error;
        throw err;
      } finally {
        client.off('error', ignore);
        client.release(failure); // a failed connection is destroyed, not reused
      }
    },
  };
}

export async function openPglite(dir: string | undefined): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  if (dir) await mkdir(dir, { recursive: true, mode: 0o700 });
  const pgl = dir ? await PGlite.create(dir) : await PGlite.create();
  // PGlite is single-connection: serialise transactions so statements of concurrent callers
  // never interleave inside someone else's BEGIN/COMMIT.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  };
  const db: Db = {
    kind: 'pglite',
    query<R>(text: string, params?: readonly unknown[]) {
      return serial(async () => {
        const r = await pgl.query<R>(text, params as unknown[] | undefined);
        return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
      });
    },
    exec(sql) {
      return serial(async () => {
        await pgl.exec(sql);
      });
    },
    transaction(fn) {
      return serial(() =>
        pgl.transaction(async (tx) =>
          fn({
            async query<R>(text: string, params?: readonly unknown[]) {
              const r = await tx.query<R>(text, params as unknown[] | undefined);
              return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
            },
          } as Pick<Db, 'query'>),
        ),
      );
    },
    async close() {
      await chain;
      await pgl.close();
    },
  };
  return db;
}

/**
 * Apply `NNNN_name.sql` files in order, each once, recorded in scopegate_migrations.
 * An advisory lock keeps replicas that start together from applying the same file twice.
 */
export async function migrate(db: Db, dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(727274001)');
    await tx.query(
      'CREATE TABLE IF NOT EXISTS scopegate_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set((await tx.query<{ name: string }>('SELECT name FROM scopegate_migrations')).rows.map((r) => r.name));
    for (const f of files) {
      if (done.has(f)) continue;
      const sql = await readFile(path.join(dir, f), 'utf8');
      // Split on statement-terminating semicolons at line ends: migrations are plain DDL written
      // for this runner (no function bodies with inner semicolons unless wrapped in $$ on one statement).
      for (const stmt of splitSql(sql)) await tx.query(stmt);
      await tx.query('INSERT INTO scopegate_migrations (name) VALUES ($1)', [f]);
      applied.push(f);
    }
  });
  return applied;
}

/** Split a migration file into statements, keeping $$-quoted bodies whole. */
export function splitSql(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inDollar = false;
  for (const line of sql.split('\n')) {
    if (/^\s*--/.test(line) && !inDollar) continue;
    const dollars = (line.match(/\$\$/g) ?? []).length;
    if (dollars % 2 === 1) inDollar = !inDollar;
    cur += line + '\n';
    if (!inDollar && /;\s*$/.test(line)) {
      const s = cur.trim();
      if (s !== ';') out.push(s);
      cur = '';
    }
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
