/**
 * Test support: a fresh database per test run on the shared Postgres (CREATE DATABASE with a
 * unique name, dropped afterwards) or an in-memory PGlite, both migrated. Postgres missing is
 * a failure, never a skip.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { loadConfig, type Config } from '../../pdp-server/src/config.js';
import { migrate, openPglite, openPostgres, type Db } from '../../pdp-server/src/store/db.js';

export const SHARED_PG = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const BACKENDS = ['postgres', 'pglite'] as const;
export type Backend = (typeof BACKENDS)[number];

export const silentLog = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

export interface TestDb {
  db: Db;
  url: string | undefined;
  cleanup(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A new, empty, migrated database on the shared Postgres. */
export async function createPgDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `sg_test_${Date.now()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: SHARED_PG, connectionTimeoutMillis: 3000 });
  await admin.connect(); // throws when the shared Postgres is missing: the test fails
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: withDatabase(SHARED_PG, name),
    async drop() {
      const c = new pg.Client({ connectionString: SHARED_PG });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function openTestDb(backend: Backend): Promise<TestDb> {
  if (backend === 'pglite') {
    const db = await openPglite(undefined);
    await migrate(db);
    return { db, url: undefined, cleanup: () => db.close() };
  }
  const created = await createPgDatabase();
  const db = await openPostgres(created.url, silentLog);
  await migrate(db);
  return {
    db,
    url: created.url,
    async cleanup() {
      await db.close();
      await created.drop();
    },
  };
}

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function testConfig(dataDir: string, env: Record<string, string> = {}): Readonly<Config> {
  return loadConfig({ SCOPEGATE_DATA_DIR: dataDir, SCOPEGATE_INSTANCE_ID: 'test-pdp', ...env });
}
