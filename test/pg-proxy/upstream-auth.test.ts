/**
 * The proxy's own login upstream, against a private Postgres whose pg_hba.conf demands a
 * specific method per user: SCRAM-SHA-256 (password stored as a SCRAM verifier), md5
 * (stored as an md5 hash, so the server really sends an MD5 challenge) and cleartext.
 * A wrong upstream password must end the client's login, never let it through.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PdpClient } from '../../shims/pdp-client/src/index.js';
import { createPgProxy, type PgProxy } from '../../shims/pg-proxy/src/index.js';
import { startPrivatePostgres, type PrivatePostgres } from '../audit/private-postgres.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const USERS = {
  scram: { name: 'sg_scram_user', password: 'scram-secret-Ä1', method: 'scram-sha-256' },
  md5: { name: 'sg_md5_user', password: 'md5-secret-2', method: 'md5' },
  clear: { name: 'sg_clear_user', password: 'clear-secret-3', method: 'password' },
} as const;

let server: PrivatePostgres;
let pdp: RunningPdp;
let pdpClient: PdpClient;
let token: string;
const proxies: PgProxy[] = [];
const clients: pg.Client[] = [];

before(async () => {
  server = await startPrivatePostgres();
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    // Each role's verifier is written with the encryption its pg_hba line expects.
    for (const u of Object.values(USERS)) {
      await admin.query(`SET password_encryption = '${u.method === 'md5' ? 'md5' : 'scram-sha-256'}'`);
      await admin.query(`CREATE ROLE ${u.name} LOGIN PASSWORD '${u.password}'`);
    }
    await admin.query(`ALTER SYSTEM SET password_encryption = 'scram-sha-256'`);
    const stored = await admin.query<{ rolname: string; kind: string }>(
      `SELECT rolname, left(rolpassword, 3) AS kind FROM pg_authid WHERE rolname LIKE 'sg\\_%' ORDER BY rolname`,
    );
    assert.deepEqual(
      stored.rows.map((r) => `${r.rolname}:${r.kind}`),
      [`${USERS.clear.name}:SCR`, `${USERS.md5.name}:md5`, `${USERS.scram.name}:SCR`],
    );
    const hbaFile = (await admin.query<{ hba_file: string }>('SHOW hba_file')).rows[0]?.hba_file ?? '';
    // Only the superuser (used by this test to set up) keeps trust; first match wins.
    writeFileSync(
      hbaFile,
      [
        `host all ${USERS.scram.name} 127.0.0.1/32 scram-sha-256`,
        `host all ${USERS.md5.name} 127.0.0.1/32 md5`,
        `host all ${USERS.clear.name} 127.0.0.1/32 password`,
        'host all postgres 127.0.0.1/32 trust',
        'local all postgres trust',
        '',
      ].join('\n'),
    );
    await admin.query('SELECT pg_reload_conf()');
    const rules = await admin.query<{ error: string | null }>('SELECT error FROM pg_hba_file_rules');
    assert.ok(rules.rows.every((r) => r.error === null), 'pg_hba.conf loads without errors');
  } finally {
    await admin.end();
  }
  pdp = await startPdp();
  pdpClient = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'pg-proxy' });
  token = await pdp.mint('agent-upstream-auth', ['sql:orders-db:select']);
});

after(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  for (const p of proxies) await p.close();
  await pdpClient?.close();
  await pdp?.close();
  server?.destroy();
});

async function proxyAs(user: string, password: string): Promise<number> {
  const proxy = createPgProxy({
    resource: 'orders-db',
    upstream: { host: '127.0.0.1', port: server.port, database: 'postgres', user, password },
    decider: pdpClient,
  });
  proxies.push(proxy);
  return (await proxy.listen(0, '127.0.0.1')).port;
}

async function agentQuery(port: number, sql: string): Promise<unknown[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'x', password: token });
  c.on('error', () => undefined);
  clients.push(c);
  await c.connect();
  return (await c.query(sql)).rows;
}

describe('pg-proxy: upstream authentication with its own credential', () => {
  for (const kind of ['scram', 'md5', 'clear'] as const) {
    const u = USERS[kind];
    it(`logs in upstream with ${u.method}`, async () => {
      const port = await proxyAs(u.name, u.password);
      assert.deepEqual(await agentQuery(port, 'select current_user as who'), [{ who: u.name }]);
    });
  }
  it('refuses the agent when the upstream rejects the proxy credential', async () => {
    const port = await proxyAs(USERS.scram.name, 'wrong-password');
    await assert.rejects(agentQuery(port, 'select 1'), (e: { code?: string }) => e.code === '08006');
    const md5Port = await proxyAs(USERS.md5.name, 'wrong-password');
    await assert.rejects(agentQuery(md5Port, 'select 1'), (e: { code?: string }) => e.code === '08006');
  });
});
