/**
 * Real services for the cache, revocation and cluster tests: the machine's shared Redis and
 * Postgres (never restarted here), throwaway Postgres databases, and private redis-server
 * processes that a test may stop and start at will.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { loadConfig, type Config } from '../../pdp-server/src/config.js';

export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
export const SHARED_PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const silentLog = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** Config for tests: defaults plus the given env; the data dir is the caller's temp dir. */
export function testConfig(env: Record<string, string>): Readonly<Config> {
  return loadConfig({ SCOPEGATE_LOG_LEVEL: 'silent', ...env });
}

/** Fails (never skips) when the shared Redis is not there: these tests need the real thing. */
export async function requireSharedRedis(): Promise<void> {
  const r = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    throw new Error(`shared Redis at ${SHARED_REDIS_URL} is required: ${(err as Error).message}`);
  } finally {
    r.disconnect();
  }
}

/** Delete every key under a prefix (bounded SCAN loop). */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    for (let i = 0; i < 10_000; i++) {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length > 0) await r.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    r.disconnect();
  }
}

export interface ThrowawayDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database on the shared Postgres, dropped (forcefully) afterwards. */
export async function createThrowawayDatabase(): Promise<ThrowawayDatabase> {
  const name = uniqueName('sg_test');
  const admin = new pg.Client({ connectionString: SHARED_PG_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`shared Postgres at ${SHARED_PG_URL} is required: ${(err as Error).message}`);
  }
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(SHARED_PG_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: SHARED_PG_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  srv.close();
  await once(srv, 'close');
  if (typeof addr !== 'object' || addr === null) throw new Error('no port');
  return addr.port;
}

/** A private redis-server on a spare port that a test may stop and start again. */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  private constructor(readonly port: number, private readonly dir: string) {}

  static async start(): Promise<PrivateRedis> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-redis-'));
    const r = new PrivateRedis(await freePort(), dir);
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', this.dir],
      { stdio: 'ignore' },
    );
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    // Bounded wait for PING.
    for (let i = 0; i < 100; i++) {
      const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      try {
        await r.connect();
        await r.ping();
        return;
      } catch {
        await new Promise((res) => setTimeout(res, 50));
      } finally {
        r.disconnect();
      }
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Wait (bounded) until `cond` holds; fails with `what` otherwise. Not a timing assertion. */
export async function eventually(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
