/**
 * The check endpoint behind a real nginx (Debian's package) using the example config in
 * shims/nginx/auth-request.conf: allowed requests reach the upstream with the service's own
 * credential; denied ones are answered 403 by nginx and never reach it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';
import { freePort } from '../cluster/test-services.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

describe('nginx auth_request → /v1/check/http', () => {
  let pdp: RunningPdp;
  let nginx: ChildProcess;
  let prefix: string;
  let upstream: http.Server;
  const seen: { method: string; url: string; auth: string | undefined }[] = [];
  let base = '';
  let token = '';

  before(async () => {
    assert.ok(NGINX, 'nginx is required (scripts/ensure-system-tools.sh installs it)');
    pdp = await startPdp();
    token = await pdp.mint('agent-1', ['http:crm:GET:/v1/contacts/*']);
    upstream = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true }));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    prefix = await mkdtemp(path.join(os.tmpdir(), 'scopegate-nginx-'));
    await mkdir(path.join(prefix, 'logs'));
    const listen = await freePort();
    const template = await readFile(path.join(REPO_ROOT, 'shims', 'nginx', 'auth-request.conf'), 'utf8');
    const conf = template
      .replaceAll('${PREFIX}', prefix)
      .replaceAll('${UPSTREAM_PORT}', String((upstream.address() as net.AddressInfo).port))
      .replaceAll('${PDP_PORT}', new URL(pdp.url).port)
      .replaceAll('${LISTEN_PORT}', String(listen))
      .replaceAll('${UPSTREAM_KEY}', 'upstream-secret')
      .replaceAll('${SHIM_KEY}', pdp.shimKey);
    await writeFile(path.join(prefix, 'nginx.conf'), conf);
    nginx = spawn(NGINX!, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' });
    base = `http://127.0.0.1:${listen}`;
    // Wait (bounded) until nginx accepts connections.
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const c = net.connect(listen, '127.0.0.1', () => {
          c.end();
          resolve(true);
        });
        c.on('error', () => resolve(false));
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    nginx?.kill('SIGTERM');
    await new Promise((r) => (nginx?.exitCode !== null ? r(undefined) : nginx.once('exit', r)));
    await new Promise((r) => upstream?.close(r));
    await pdp?.close();
    if (prefix) await rm(prefix, { recursive: true, force: true });
  });

  /**
   * Raw node:http, so the path goes out exactly as written (fetch would resolve `..` and
   * `%2e%2e` itself). `auth: null` sends no Authorization header at all.
   */
  const call = (method: string, p: string, auth: string | null = `Bearer ${token}`) =>
    new Promise<{ status: number; headers: { get(name: string): string | null } }>((resolve, reject) => {
      const req = http.request(base + '/', { method, path: p, headers: auth === null ? {} : { authorization: auth } }, (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: { get: (n: string) => (res.headers[n.toLowerCase()] as string | undefined) ?? null },
          }),
        );
      });
      req.on('error', reject);
      req.end();
    });

  it('an allowed request reaches the upstream with the service credential, not the token', async () => {
    const res = await call('GET', '/v1/contacts/42');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('x-scopegate-decision-id') ?? '', /^[0-9a-f-]{36}$/);
    const last = seen.at(-1)!;
    assert.equal(last.url, '/v1/contacts/42');
    assert.equal(last.auth, 'Bearer upstream-secret');
  });

  it('denied requests get 403 and never reach the upstream', async () => {
    const before = seen.length;
    for (const [method, p, auth] of [
      ['DELETE', '/v1/contacts/42', `Bearer ${token}`],
      ['GET', '/v1/admin/users', `Bearer ${token}`],
      ['GET', '/v1/contacts/../admin/users', `Bearer ${token}`],
      ['GET', '/v1/contacts/%2e%2e/admin/users', `Bearer ${token}`],
      ['GET', '/v1/contacts/1', 'Bearer not-a-token'],
      ['GET', '/v1/contacts/1', null],
    ] as const) {
      const res = await call(method, p, auth);
      assert.equal(res.status, 403, `${method} ${p}`);
    }
    assert.equal(seen.length, before);
  });

  it('every check is in the decision counters', async () => {
    const text = (await pdp.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /scopegate_decisions_total\{effect="deny"/);
    assert.match(text, /scopegate_decisions_total\{effect="allow"/);
  });
});
