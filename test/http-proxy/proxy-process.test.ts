/** The http-proxy as a process: configuration problems are reported at once; a valid file serves. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseProxyConfig, ProxyConfigError } from '../../shims/http-proxy/src/proxy-config.js';

const MAIN = path.resolve('shims/http-proxy/src/main.ts');

test('a bad configuration lists every problem and the process refuses to start', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-proxy-'));
  try {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'routes:\n  - { prefix: /x, kind: soap, upstream: nope, credential: { header: x-k, env: SG_TEST_MISSING } }\n');
    const res = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--config', file], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(res.status, 2, res.stderr);
    for (const expected of ['PDP url is required', 'shim key is required', 'routes[0].kind', 'routes[0].resource', 'SG_TEST_MISSING']) {
      assert.ok(res.stderr.includes(expected), `${expected} in ${res.stderr}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('file + environment: credentials from env and secret files, env overrides listen and PDP', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-proxy-'));
  try {
    const secret = path.join(dir, 'secret');
    await writeFile(secret, 'from-file\n');
    const yaml = `listen: { port: 9000 }\npdp: { url: http://pdp.example:8181 }\napproval_wait_s: 5\nroutes:\n  - { prefix: /a, resource: a, kind: rest, upstream: https://a.example, credential: { header: x-api-key, env: A_KEY } }\n  - { host: llm.local, resource: openai, kind: llm, upstream: https://api.openai.com, credential: { header: authorization, prefix: "Bearer ", file: ${secret} } }\n`;
    const cfg = parseProxyConfig(yaml, { A_KEY: 'from-env', SCOPEGATE_SHIM_KEY: 'shim', SCOPEGATE_HTTP_PROXY_PORT: '8383' });
    assert.equal(cfg.port, 8383);
    assert.equal(cfg.host, '127.0.0.1');
    assert.deepEqual(cfg.options.pdp, { url: 'http://pdp.example:8181', key: 'shim' });
    assert.equal(cfg.options.approvalWaitS, 5);
    assert.deepEqual(cfg.options.routes[0]?.credential, { header: 'x-api-key', value: 'from-env' });
    assert.deepEqual(cfg.options.routes[1]?.credential, { header: 'authorization', value: 'Bearer from-file' });
    assert.ok(Object.isFrozen(cfg));
    assert.throws(() => parseProxyConfig('routes: []', {}), ProxyConfigError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
