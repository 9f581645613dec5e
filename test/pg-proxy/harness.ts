/**
 * Test harness for the pg-proxy: a private database on the shared local Postgres (so the
 * default policy's `public.customers` can exist without touching anyone else's tables), the
 * real PDP with the real default policy, and the proxy in between.
 */
import { randomBytes } from 'node:crypto';
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
`;

export interface Harness {
  db: string;
  pdp: RunningPdp;
  proxy: PgProxy;
  port: number;
  events: Array<Record<string, unknown>>;
  token(scopes: string[]): Promise<string>;
  client(token: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  close(): Promise<void>;
}

export async function startHarness(opts: Partial<PgProxyOptions> = {}): Promise<Harness> {
  const db = `sg_pgproxy_${randomBytes(6).toString('hex')}`;
  const admin = await adminClient();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const fixture = await adminClient(db);
  await fixture.query(FIXTURE_SQL);
  await fixture.end();
  const pdp = await startPdp();
  const pdpClient = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'pg-proxy' });
  const events: Array<Record<string, unknown>> = [];
  const proxy = createPgProxy({
    resource: 'orders-db',
    upstream: { ...PG, database: db },
    decider: pdpClient,
    log: (e) => events.push(e),
    ...opts,
  });
  const { port } = await proxy.listen(0, '127.0.0.1');
  const clients: pg.Client[] = [];
  return {
    db,
    pdp,
    proxy,
    port,
    events,
    token: (scopes) => pdp.mint('agent-under-test', scopes),
    async client(token, extra = {}) {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'whatever', password: token, ...extra });
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await proxy.close();
      await pdpClient.close();
      await pdp.close();
      const a = await adminClient();
      await a.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** Run a query and return the error's SQLSTATE and message (or throw if it succeeded). */
export async function queryError(c: pg.Client, sql: string, values?: unknown[]): Promise<{ code: string; message: string }> {
  try {
    await c.query(sql, values);
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? '', message: e.message };
  }
  throw new Error(`expected an error from: ${sql}`);
}
