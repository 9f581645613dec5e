/**
 * Test harness for the pg-proxy: a private database on the shared local Postgres (so the
 * default policy's `public.customers` can exist without touching anyone else's tables), the
 * real PDP with the real default policy, and the proxy in between.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { PdpClient } from '../../shims/pdp-client/src/index.js';
import { createPgProxy, type PgProxy, type PgProxyOptions } from '../../shims/pg-proxy/src/index.js';

export const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' } as const;

/** Connect to the shared Postgres; with CI set a missing server fails the test instead of skipping it. */
export async function adminClient(database = 'test'): Promise<pg.Client> {
  const c = new pg.Client({ ...PG, database });
  await c.connect();
  return c;
}

export const FIXTURE_SQL = `
  CREATE TABLE public.customers (id int PRIMARY KEY, name text, ssn text, email text, phone varchar(32), card_number text, age int);
  INSERT INTO public.customers VALUES
    (1, 'Ada', '123-45-6789', 'ada@example.com', '+1 555 0100', '4111111111111111', 36),
    (2, 'Bob', '987-65-4321', 'bob@example.com', '+1 555 0101', '5500000000000004', 41);
  CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, total numeric, note text);
  INSERT INTO public.orders VALUES (10, 1, 9.5, 'first'), (11, 2, 20, 'second');
  CREATE TABLE public.payroll (id int PRIMARY KEY, name text, salary numeric, iban text);
  INSERT INTO public.payroll VALUES (1, 'Ada', 100000, 'DE89370400440532013000');
`;

export interface Harness {
  db: string;
  pdp: RunningPdp;
  pdpClient: PdpClient;
  proxy: PgProxy;
  port: number;
  events: Array<Record<string, unknown>>;
  token(scopes: string[], extra?: { ttl_s?: number }): Promise<string>;
  client(token: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  /** Another proxy on the same database and PDP with different options (closed by `close`). */
  startProxy(opts: Partial<PgProxyOptions>, host?: string): Promise<{ port: number; client(token: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client> }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Extra PDP environment (e.g. SCOPEGATE_CLOCK_SKEW_S). */
  pdpEnv?: Record<string, string>;
}

export async function startHarness(opts: Partial<PgProxyOptions> = {}, hopts: HarnessOptions = {}): Promise<Harness> {
  const db = `sg_pgproxy_${randomBytes(6).toString('hex')}`;
  const admin = await adminClient();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const fixture = await adminClient(db);
  await fixture.query(FIXTURE_SQL);
  await fixture.end();
  let pdp: RunningPdp;
  try {
    pdp = await startPdp(hopts.pdpEnv ? { env: hopts.pdpEnv } : {});
  } catch (err) {
    const a = await adminClient();
    await a.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await a.end();
    throw err;
  }
  const pdpClient = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'pg-proxy' });
  const events: Array<Record<string, unknown>> = [];
  const proxies: PgProxy[] = [];
  const clients: pg.Client[] = [];
  const connect = async (host: string, port: number, token: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> => {
    const c = new pg.Client({ host, port, user: 'agent', database: 'whatever', password: token, ...extra });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  const startProxy = async (
    o: Partial<PgProxyOptions>,
    host = '127.0.0.1',
  ): Promise<{ proxy: PgProxy; port: number; client(token: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client> }> => {
    const proxy = createPgProxy({
      resource: 'orders-db',
      upstream: { ...PG, database: db },
      decider: pdpClient,
      log: (e) => events.push(e),
      ...o,
    });
    proxies.push(proxy);
    const { port } = await proxy.listen(0, host);
    return { proxy, port, client: (token, extra) => connect(host, port, token, extra) };
  };
  const { proxy, port } = await startProxy(opts);
  return {
    db,
    pdp,
    pdpClient,
    proxy,
    port,
    events,
    token: (scopes, extra) => pdp.mint('agent-under-test', scopes, extra),
    client: (token, extra) => connect('127.0.0.1', port, token, extra),
    startProxy,
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      for (const p of proxies) await p.close();
      await pdpClient.close();
      await pdp.close();
      const a = await adminClient();
      await a.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** Run a query and return the error's SQLSTATE and message (or throw if it succeeded). */
export async function queryError(c: pg.Client, sql: string, values?: unknown[]): Promise<{ code: string; message: string; detail: string }> {
  try {
    await c.query(sql, values);
  } catch (err) {
    const e = err as { code?: string; message: string; detail?: string };
    return { code: e.code ?? '', message: e.message, detail: e.detail ?? '' };
  }
  throw new Error(`expected an error from: ${sql}`);
}

/** Send a CancelRequest (§55.2.9) on a new connection, as libpq and node-postgres do. */
export function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(pid, 8);
      b.writeInt32BE(secret, 12);
      s.end(b);
    });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}
