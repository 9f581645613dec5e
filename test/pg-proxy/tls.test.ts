/**
 * TLS between the agent and the proxy: a self-signed certificate made at test time with the
 * openssl CLI, real handshakes from node-postgres and psql (sslmode=require), and the rule
 * that the token never travels in plaintext from a non-loopback peer unless configured.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import type pg from 'pg';
import { isLoopbackAddress, plaintextLoginAllowed } from '../../shims/pg-proxy/src/proxy-session.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let token: string;
let certDir: string;
let cert: { cert: Buffer; key: Buffer };

/** The first non-loopback IPv4 address of this machine: connections to it arrive from a non-loopback peer. */
function externalAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this test needs a non-loopback IPv4 interface');
}

before(async () => {
  certDir = mkdtempSync(path.join(os.tmpdir(), 'sg-pgproxy-tls-'));
  const keyFile = path.join(certDir, 'key.pem');
  const certFile = path.join(certDir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile],
    { stdio: 'pipe', timeout: 20_000 },
  );
  cert = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  h = await startHarness({ tls: cert });
  token = await h.token(['sql:orders-db:select:public.*']);
});
after(async () => {
  await h?.close();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

const stream = (c: pg.Client) => (c as unknown as { connection: { stream: unknown } }).connection.stream;

describe('pg-proxy: TLS', () => {
  it('completes a TLS handshake with node-postgres', async () => {
    const c = await h.client(token, { ssl: { rejectUnauthorized: false } });
    assert.ok(stream(c) instanceof tls.TLSSocket);
    assert.equal((stream(c) as tls.TLSSocket).getPeerCertificate().subject?.CN, 'localhost');
    assert.equal((await c.query('select count(*)::int as n from orders')).rows[0].n, 2);
    const started = h.events.filter((e) => e.event === 'session_started');
    assert.equal(started.at(-1)?.tls, true);
  });
  it('completes a TLS handshake with psql sslmode=require', async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'psql',
        ['-X', '-At', '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', '-d', 'x', '-c', 'select note from orders order by id', '-c', '\\conninfo'],
        { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: 'require' }, encoding: 'utf8', timeout: 20_000 },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
      );
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^first\nsecond\n/);
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
  });
  it('refuses a plaintext login from a non-loopback peer, accepts it over TLS', async () => {
    const addr = externalAddress();
    const strict = await h.startProxy({ tls: cert }, addr);
    await assert.rejects(strict.client(token, { ssl: false }), (e: { code?: string }) => e.code === '28000');
    const secure = await strict.client(token, { ssl: { rejectUnauthorized: false } });
    assert.equal((await secure.query('select 1 as one')).rows[0].one, 1);
    // Without a certificate there is no way in from that peer at all.
    const noTls = await h.startProxy({}, addr);
    await assert.rejects(noTls.client(token, { ssl: false }), (e: { code?: string }) => e.code === '28000');
  });
  it('accepts plaintext from a non-loopback peer only when configured', async () => {
    const open = await h.startProxy({ allowPlaintextNonLoopback: true }, externalAddress());
    const c = await open.client(token, { ssl: false });
    assert.equal((await c.query('select 1 as one')).rows[0].one, 1);
  });
  it('classifies loopback peers (the rule itself)', () => {
    for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(a), true, a);
    for (const a of ['10.0.0.1', '192.0.2.2', '::ffff:10.0.0.1', 'fd00::2', '', undefined, 'localhost']) assert.equal(isLoopbackAddress(a), false, String(a));
    assert.equal(plaintextLoginAllowed('10.0.0.1', false), false);
    assert.equal(plaintextLoginAllowed('10.0.0.1', true), true);
    assert.equal(plaintextLoginAllowed('::1', false), true);
  });
});
