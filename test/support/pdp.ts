/**
 * Starts a real PDP (the real app, the real default policy compiled to WASM) on a random
 * loopback port with its own temporary data folder. Used by integration tests of the PDP
 * and of the shims.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../pdp-server/src/app.js';
import { loadConfig, REPO_ROOT, type Config } from '../../pdp-server/src/config.js';
import { createThrowawayDatabase, SHARED_PG_URL } from '../cluster/test-services.js';

/** The bundle `npm test` builds before the tests run (pretest). */
export const BUILT_BUNDLE = path.join(REPO_ROOT, '.scopegate', 'build', 'bundle.tar.gz');

export interface RunningPdp {
  app: FastifyInstance;
  config: Readonly<Config>;
  url: string;
  shimKey: string;
  adminKey: string;
  auditorKey: string;
  approverKey: string;
  /** Mint a token through the real admin API. */
  mint(sub: string, scopes: string[], extra?: { ttl_s?: number; chain?: string; step?: string }): Promise<string>;
  close(): Promise<void>;
}

export interface StartPdpOptions {
  /** Extra environment (SCOPEGATE_*, REDIS_URL, DATABASE_URL…) on top of the test defaults. */
  env?: Record<string, string>;
  /** Listen on a port (default) or only build the app for `inject`. */
  listen?: boolean;
  /**
   * Use the embedded PGlite store instead of a throwaway database on the test Postgres.
   * (PGlite takes seconds to start, so tests use Postgres unless they test the embedded path.)
   */
  embedded?: boolean;
}

/** The Postgres the tests use (each PDP gets a throwaway database on it). */
export const TEST_DATABASE_URL = SHARED_PG_URL;

export async function startPdp(opts: StartPdpOptions = {}): Promise<RunningPdp> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-test-'));
  const database = opts.embedded || opts.env?.DATABASE_URL ? undefined : await createThrowawayDatabase();
  const env: Record<string, string> = {
    SCOPEGATE_DATA_DIR: dataDir,
    SCOPEGATE_PORT: '0',
    SCOPEGATE_POLICY_WATCH: 'false',
    SCOPEGATE_LOG_LEVEL: 'silent',
    // Reuse the bundle built by `npm test`'s pretest when it exists; compiling per test costs a second.
    ...(existsSync(BUILT_BUNDLE) ? { SCOPEGATE_POLICY_BUNDLE: BUILT_BUNDLE } : {}),
    ...(database ? { DATABASE_URL: database.url } : {}),
    ...opts.env,
  };
  const config = loadConfig(env);
  const app = await buildApp(config);
  let url = '';
  if (opts.listen !== false) url = await app.listen({ host: '127.0.0.1', port: 0 });
  const key = (role: 'admin' | 'shim' | 'auditor' | 'approver') => app.credentials.key(role);
  return {
    app,
    config,
    url,
    shimKey: key('shim'),
    adminKey: key('admin'),
    auditorKey: key('auditor'),
    approverKey: key('approver'),
    async mint(sub, scopes, extra = {}) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/tokens',
        headers: { authorization: `Bearer ${key('admin')}` },
        payload: { sub, scopes, ...extra },
      });
      if (res.statusCode !== 201) throw new Error(`mint failed: ${res.statusCode} ${res.body}`);
      return (res.json() as { token: string }).token;
    },
    async close() {
      await app.close();
      await database?.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
