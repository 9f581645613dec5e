/**
 * The http-proxy against a plain reverse proxy, in one run: the same upstream reached
 *   direct      the upstream itself
 *   nginx       Debian nginx as a plain reverse proxy (1 worker, upstream keep-alive)
 *   scopegate   the http-proxy process (main.ts + a generated config) deciding with a real
 *               PDP process; decisions are warm (the proxy's local cache, bounded by ttl_ms)
 *   scopegate+mask  the same, on a route whose policy masks the JSON answer (crm resource)
 *
 *   npm run bench:http [-- --duration 8 --latency-duration 5 --connections 16]
 *
 * Phases: warm-up; throughput (autocannon, closed loop, N connections) per target; latency
 * (one keep-alive connection, sequential requests timed with performance.now(), so the
 * figures have microsecond resolution — autocannon's histogram counts whole ms); streaming
 * time to first byte (chat completion with stream: true, direct vs scopegate).
 * Results and targets are printed as tables; see docs/benchmarks.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import { freePort, startScopegate, type RunningScopegate } from '../pdp-vs-opa/servers.js';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Autocannon = (opts: { url: string; headers: Record<string, string>; connections: number; duration: number; pipelining: number }) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    'latency-duration': { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    streams: { type: 'string', default: '60' },
  },
});
const num = (name: string, v: string | undefined, max: number) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`--${name} must be a number in (0, ${max}]`);
  return n;
};
const DURATION_S = num('duration', args.duration, 60);
const LATENCY_S = num('latency-duration', args['latency-duration'], 60);
const WARMUP_S = num('warmup', args.warmup, 30);
const CONNECTIONS = Math.round(num('connections', args.connections, 512));
const STREAMS = Math.round(num('streams', args.streams, 1000));

const children: ChildProcess[] = [];
function child(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, argv, { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  c.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${path.basename(cmd)}] ${d}`));
  return c;
}
async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = once(c, 'exit');
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

async function waitHttp(url: string, ok: (status: number) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (ok(res.status)) return;
    } catch {
      // not yet listening
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms`);
}

async function startUpstream(): Promise<{ json: string; openai: string }> {
  const c = child(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench/http-proxy/upstream.ts')]);
  const lines = createInterface({ input: c.stdout! });
  const [line] = (await Promise.race([once(lines, 'line'), sleep(30_000).then(() => [undefined])])) as [string | undefined];
  if (!line) throw new Error('upstream did not start');
  return JSON.parse(line) as { json: string; openai: string };
}

async function startNginx(dir: string, upstream: string): Promise<string> {
  const port = await freePort();
  const up = new URL(upstream);
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, d), { recursive: true });
  // A plain reverse proxy as commonly deployed: one worker (the node proxy is one event
  // loop too), keep-alive to the upstream, no access log, no buffering of answers.
  const conf = `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream up { server ${up.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`;
  await writeFile(path.join(dir, 'nginx.conf'), conf);
  child('/usr/sbin/nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/v1/items/1`, (s) => s === 200, 15_000);
  return url;
}

async function mint(pdp: RunningScopegate, scopes: string[]): Promise<string> {
  const res = await request(`${pdp.url}/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${pdp.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ sub: 'bench-agent', scopes, ttl_s: 900 }),
  });
  const body = (await res.body.json()) as { token?: string };
  if (res.statusCode !== 201 || !body.token) throw new Error(`mint failed: ${res.statusCode}`);
  return body.token;
}

async function startProxy(dir: string, pdp: RunningScopegate, up: { json: string; openai: string }): Promise<string> {
  const port = await freePort();
  const file = path.join(dir, 'http-proxy.yaml');
  await writeFile(
    file,
    `listen: { host: 127.0.0.1, port: ${port} }
pdp: { url: ${pdp.url} }
routes:
  - { prefix: /plain, resource: bench, kind: rest, upstream: ${up.json}, credential: { header: x-api-key, env: BENCH_UPSTREAM_KEY } }
  - { prefix: /crm, resource: crm, kind: rest, upstream: ${up.json} }
  - { prefix: /openai, resource: openai, kind: llm, provider: openai, upstream: ${up.openai} }
`,
  );
  child(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'shims/http-proxy/src/main.ts'), '--config', file], {
    NODE_ENV: 'production',
    SCOPEGATE_SHIM_KEY: pdp.shimKey,
    SCOPEGATE_LOG_LEVEL: 'warn',
    BENCH_UPSTREAM_KEY: 'bench-upstream-secret',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/plain/v1/items/1`, (s) => s === 401, 60_000);
  return url;
}

interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
}

/** Sequential requests on one keep-alive connection for `seconds`; per-request times in ms. */
async function latencies(t: Target, seconds: number): Promise<number[]> {
  const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });
  const out: number[] = [];
  const end = performance.now() + seconds * 1000;
  try {
    for (let i = 0; i < 1_000_000 && performance.now() < end; i++) {
      const t0 = performance.now();
      const res = await request(t.url, { headers: t.headers, dispatcher: agent });
      await res.body.arrayBuffer();
      out.push(performance.now() - t0);
      if (res.statusCode !== 200) throw new Error(`${t.name}: HTTP ${res.statusCode}`);
    }
  } finally {
    await agent.close();
  }
  return out.sort((a, b) => a - b);
}

/** Time to the first body byte of a streamed chat completion, `n` times in a row. */
async function ttfb(url: string, headers: Record<string, string>, n: number): Promise<number[]> {
  const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });
  const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Tell me about foxes.' }] });
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const res = await request(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body, dispatcher: agent });
      let first: number | undefined;
      for await (const _chunk of res.body) first ??= performance.now() - t0;
      if (res.statusCode !== 200 || first === undefined) throw new Error(`stream: HTTP ${res.statusCode}`);
      out.push(first);
    }
  } finally {
    await agent.close();
  }
  return out.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
const f = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-bench-http-'));
  let pdp: RunningScopegate | undefined;
  try {
    console.log(`load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cpus)`);
    const up = await startUpstream();
    const nginx = await startNginx(dir, up.json);
    pdp = await startScopegate({ dataDir: path.join(dir, 'pdp'), env: {} });
    const token = await mint(pdp, ['http:bench:GET:/v1/items/*', 'http:crm:GET:/v1/items/*', 'llm:openai:chat:gpt-4o-*']);
    const proxy = await startProxy(dir, pdp, up);
    const auth = { authorization: `Bearer ${token}` };
    const targets: Target[] = [
      { name: 'direct', url: `${up.json}/v1/items/1`, headers: {} },
      { name: 'nginx', url: `${nginx}/v1/items/1`, headers: {} },
      { name: 'scopegate', url: `${proxy}/plain/v1/items/1`, headers: auth },
      { name: 'scopegate+mask', url: `${proxy}/crm/v1/items/1`, headers: auth },
    ];
    // Sanity: the masked route really masks (so its figures include the masking work).
    const probe = await request(targets[3]!.url, { headers: auth });
    const probeText = await probe.body.text();
    if (probe.statusCode !== 200 || probeText.includes('ann@example.com')) throw new Error(`masked route did not mask: ${probe.statusCode} ${probeText}`);

    const rows = new Map<string, { rps: number; acP50: number; acP99: number; errors: number; lat: number[] }>();
    for (const t of targets) {
      await autocannon({ url: t.url, headers: t.headers, connections: CONNECTIONS, duration: WARMUP_S, pipelining: 1 });
    }
    for (const t of targets) {
      const r = await autocannon({ url: t.url, headers: t.headers, connections: CONNECTIONS, duration: DURATION_S, pipelining: 1 });
      rows.set(t.name, { rps: r.requests.average, acP50: r.latency.p50, acP99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx, lat: [] });
      console.log(`  throughput ${t.name}: ${f(r.requests.average, 0)} req/s`);
    }
    for (const t of targets) {
      rows.get(t.name)!.lat = await latencies(t, LATENCY_S);
      console.log(`  latency ${t.name}: ${rows.get(t.name)!.lat.length} requests`);
    }
    const streamDirect = await ttfb(`${up.openai}/v1/chat/completions`, {}, STREAMS);
    const streamProxy = await ttfb(`${proxy}/openai/v1/chat/completions`, auth, STREAMS);

    const direct = rows.get('direct')!;
    const nginxRow = rows.get('nginx')!;
    const dP50 = pct(direct.lat, 50);
    const dP99 = pct(direct.lat, 99);
    console.log(`\nthroughput: ${CONNECTIONS} connections, ${DURATION_S} s each; latency: 1 connection, ${LATENCY_S} s each (ms)\n`);
    console.log('| path | req/s | × nginx | errors | p50 | p99 | added p50 | added p99 |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of targets) {
      const r = rows.get(t.name)!;
      const p50 = pct(r.lat, 50);
      const p99 = pct(r.lat, 99);
      console.log(`| ${t.name} | ${f(r.rps, 0)} | ${f(r.rps / nginxRow.rps)} | ${r.errors} | ${f(p50, 3)} | ${f(p99, 3)} | ${t.name === 'direct' ? '—' : f(p50 - dP50, 3)} | ${t.name === 'direct' ? '—' : f(p99 - dP99, 3)} |`);
    }
    console.log(`\nstreaming time to first byte, ${STREAMS} streamed chat completions each (ms)\n`);
    console.log('| path | p50 | p90 | max |');
    console.log('|---|---:|---:|---:|');
    console.log(`| direct | ${f(pct(streamDirect, 50), 3)} | ${f(pct(streamDirect, 90), 3)} | ${f(streamDirect.at(-1) ?? NaN, 3)} |`);
    console.log(`| scopegate | ${f(pct(streamProxy, 50), 3)} | ${f(pct(streamProxy, 90), 3)} | ${f(streamProxy.at(-1) ?? NaN, 3)} |`);
    const sg = rows.get('scopegate')!;
    const ratioOk = sg.rps / nginxRow.rps >= 0.5;
    const added = pct(sg.lat, 50) - dP50;
    console.log(`\ntargets: throughput ≥ 0.5× nginx: ${f(sg.rps / nginxRow.rps)}× ${ratioOk ? 'MET' : 'MISSED'}; added p50 ≤ 1 ms: ${f(added, 3)} ms ${added <= 1 ? 'MET' : 'MISSED'}`);
    console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    for (const c of children.reverse()) await stop(c);
    await pdp?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
