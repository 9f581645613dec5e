/**
 * Everything the demo runs, started in one process on loopback ports and torn down again:
 * the demo database (a throwaway database on your Postgres when a URL is given, else
 * embedded PGlite served over the wire protocol), the PDP on embedded defaults, the
 * pg-proxy in front of the database, the CRM and the scripted model, and the http-proxy in
 * front of those two.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { buildApp } from '../pdp-server/src/app.js';
import { loadConfig, REPO_ROOT } from '../pdp-server/src/config.js';
import { PdpClient } from '../shims/pdp-client/src/index.js';
import { createPgProxy, type PgProxy } from '../shims/pg-proxy/src/index.js';
import { createHttpProxy } from '../shims/http-proxy/src/index.js';
import type { Decision, DecideRequest } from '../pdp-server/src/contract.js';
import { startCrmApi, type CrmApi } from './crm-api.js';
import { startScriptedModel, type ScriptedModel } from './scripted-model.js';
import { DEMO_STEPS, LLM_RESOURCE } from './demo-script.js';

const SEED_SQL = path.join(path.dirname(fileURLToPath(import.meta.url)), 'seed.sql');
/** The bundle `npm run policy:build` writes; the PDP compiles the policy itself when it is missing. */
const BUILT_BUNDLE = path.join(REPO_ROOT, '.scopegate', 'build', 'bundle.tar.gz');

export interface DemoStackOptions {
  /** Postgres server for the demo database and the PDP's log (a throwaway database is created on it). */
  databaseUrl?: string | undefined;
  /** The session whose decisions the pg-proxy labels (see `sessionDecider`). */
  sessionId: string;
}

export interface DemoStack {
  pdpUrl: string;
  keys: { admin: string; shim: string; auditor: string; approver: string };
  httpProxyUrl: string;
  pgProxy: { host: string; port: number };
  crm: CrmApi;
  model: ScriptedModel;
  /** Which database backs the demo: 'postgres' or 'pglite'. */
  database: 'postgres' | 'pglite';
  /** Read the demo database directly (as its owner, not through the proxy) — for checks. */
  query(sql: string): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

/**
 * The pg-proxy labels its decisions with its own connection id; a client cannot yet name
 * its session over the wire protocol (the http-proxy reads `x-scopegate-session`). The demo
 * runs one agent session, so its pg-proxy is bound to that session here, through the
 * proxy's `decider` option.
 */
function sessionDecider(inner: PdpClient, sessionId: string) {
  return {
    decide: (req: DecideRequest): Promise<Decision> => inner.decide({ ...req, context: { ...req.context, session_id: sessionId } }),
    waitApproval: inner.waitApproval.bind(inner),
  };
}

interface DemoDatabase {
  upstream: { host: string; port: number; database: string; user: string; password?: string | undefined };
  /** DATABASE_URL for the PDP, or undefined for its embedded PGlite. */
  pdpDatabaseUrl: string | undefined;
  query(sql: string): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

async function startPostgresDatabase(serverUrl: string, seed: string): Promise<DemoDatabase> {
  const name = `scopegate_demo_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.end().catch(() => undefined);
    throw new Error(`the demo needs to create a database on ${redactUrl(serverUrl)}: ${(err as Error).message}`);
  }
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const owner = new pg.Client({ connectionString: url.toString() });
  await owner.connect();
  await owner.query(seed);
  return {
    upstream: {
      host: url.hostname || '127.0.0.1',
      port: Number(url.port || 5432),
      database: name,
      user: decodeURIComponent(url.username || 'postgres'),
      password: url.password ? decodeURIComponent(url.password) : undefined,
    },
    pdpDatabaseUrl: url.toString(),
    query: async (sql) => (await owner.query(sql)).rows as Array<Record<string, unknown>>,
    async close() {
      await owner.end().catch(() => undefined);
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

async function startPgliteDatabase(seed: string): Promise<DemoDatabase> {
  const db = await PGlite.create();
  await db.exec(seed);
  // PGlite is one connection; the socket server multiplexes the proxy's connections onto it.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
  await server.start();
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  return {
    upstream: { host: '127.0.0.1', port, database: 'postgres', user: 'postgres' },
    pdpDatabaseUrl: undefined,
    query: async (sql) => (await db.query<Record<string, unknown>>(sql)).rows,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}

function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '(unparseable url)';
  }
}

export async function startDemoStack(opts: DemoStackOptions): Promise<DemoStack> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async () => {
    // Reverse order: clients before servers, servers before the database.
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  };
  try {
    const seed = await readFile(SEED_SQL, 'utf8');
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-demo-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const startPdp = async (databaseUrl: string | undefined): Promise<FastifyInstance> => {
      const app = await buildApp(
        loadConfig({
          SCOPEGATE_DATA_DIR: dataDir,
          SCOPEGATE_HOST: '127.0.0.1',
          SCOPEGATE_PORT: '0',
          SCOPEGATE_POLICY_WATCH: 'false',
          SCOPEGATE_LOG_LEVEL: 'silent',
          SCOPEGATE_CACHE: 'memory',
          ...(existsSync(BUILT_BUNDLE) ? { SCOPEGATE_POLICY_BUNDLE: BUILT_BUNDLE } : {}),
          ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
        }),
      );
      cleanups.push(() => app.close());
      return app;
    };
    let database: DemoDatabase;
    let pdp: FastifyInstance;
    if (opts.databaseUrl) {
      // The PDP logs into the same throwaway database, so nothing is left behind.
      database = await startPostgresDatabase(opts.databaseUrl, seed);
      cleanups.push(() => database.close());
      pdp = await startPdp(database.pdpDatabaseUrl);
    } else {
      // Two embedded PGlite instances (the demo data; the PDP's log): start them side by side.
      const [db, app] = await Promise.allSettled([startPgliteDatabase(seed), startPdp(undefined)]);
      if (db.status === 'fulfilled') cleanups.push(() => db.value.close());
      if (db.status === 'rejected') throw db.reason;
      if (app.status === 'rejected') throw app.reason;
      database = db.value;
      pdp = app.value;
    }
    const pdpUrl = await pdp.listen({ host: '127.0.0.1', port: 0 });
    const keys = {
      admin: pdp.credentials.key('admin'),
      shim: pdp.credentials.key('shim'),
      auditor: pdp.credentials.key('auditor'),
      approver: pdp.credentials.key('approver'),
    };

    const pgDecider = new PdpClient({ url: pdpUrl, key: keys.shim, shim: 'pg-proxy' });
    cleanups.push(() => pgDecider.close());
    const pgProxy: PgProxy = createPgProxy({ resource: 'orders-db', upstream: database.upstream, decider: sessionDecider(pgDecider, opts.sessionId) });
    const pgAddr = await pgProxy.listen(0, '127.0.0.1');
    cleanups.push(() => pgProxy.close());

    const crmKey = randomBytes(16).toString('hex');
    const crm = await startCrmApi(crmKey);
    cleanups.push(() => crm.close());
    const model = await startScriptedModel(DEMO_STEPS);
    cleanups.push(() => model.close());
    const httpProxy = createHttpProxy({
      pdp: { url: pdpUrl, key: keys.shim },
      routes: [
        { prefix: '/crm', resource: 'crm', kind: 'rest', upstream: crm.url, credential: { header: 'x-api-key', value: crmKey } },
        { prefix: '/llm', resource: LLM_RESOURCE, kind: 'llm', provider: LLM_RESOURCE, upstream: model.url },
      ],
    });
    cleanups.push(() => httpProxy.close());
    const httpProxyUrl = await httpProxy.listen({ host: '127.0.0.1', port: 0 });

    return {
      pdpUrl,
      keys,
      httpProxyUrl,
      pgProxy: pgAddr,
      crm,
      model,
      database: opts.databaseUrl ? 'postgres' : 'pglite',
      query: database.query,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
