/**
 * Benchmark: pgbench through scopegate's pg-proxy, directly against Postgres, and through
 * pgbouncer, in one run, on a dedicated throwaway database of the local Postgres.
 *
 *   node --import tsx bench/pg-proxy/pg-proxy-bench.ts [--seconds 12] [--clients 8] [--threads 2]
 *        [--mode simple|prepared] [--workers N] [--no-summary-cache] [--profile] [--baseline-pipe]
 *        [--upstream tcp|socket] [--workloads select,rw,masked]
 *
 * - direct:    pgbench → Postgres 127.0.0.1:5432.
 * - pgbouncer: pgbench → our own pgbouncer (Debian package; session pooling, auth_type trust,
 *              generated ini in a temp dir, run as the `postgres` user) → Postgres.
 * - scopegate: pgbench (token as PGPASSWORD) → pg-proxy as its own process
 *              (`shims/pg-proxy/src/main.ts`) → Postgres; the PDP runs in this process with
 *              the default policy plus a bench resource `bench-db` that declares a sensitive
 *              column (`pgbench_accounts.filler`, redact), so every result goes through the
 *              masking path, and the third workload reads the masked column.
 *
 * Workloads (simple query protocol unless `--mode prepared`; -n: no vacuum): select-only (`-S`), read/write
 * (`-b simple-update`: UPDATE accounts, SELECT, INSERT history; chosen over TPC-B-like because
 * at scale 1 TPC-B's single branch row makes all three targets lock-bound), and a select of
 * the masked column. Phases alternate targets per workload so slow drift of the shared
 * machine's load hits all of them alike; the load average is printed per phase.
 * `--profile` runs the proxy with `--cpu-prof` and prints where its time went;
 * `--baseline-pipe` adds a plain Node TCP relay (no parsing, no policy) as a fourth target.
 * `--workers N` runs the proxy as N processes (its `workers` setting, node:cluster);
 * `--no-summary-cache` turns its statement summary cache off (to measure what it buys).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BUNDLED_POLICY_DIR, REPO_ROOT } from '../../pdp-server/src/config.js';
import { startPdp, type RunningPdp } from '../../test/support/pdp.js';
import { cpuTimesOf, reapedChildrenCpuSeconds, type CpuTimes } from '../pdp-vs-opa/machine.js';
import { freePort, spawnService } from '../pdp-vs-opa/servers.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '12' },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    profile: { type: 'boolean', default: false },
    'baseline-pipe': { type: 'boolean', default: false },
    mode: { type: 'string', default: 'simple' },
    workers: { type: 'string', default: '1' },
    'no-summary-cache': { type: 'boolean', default: false },
    // A subset of the workloads, comma-separated: select, rw, masked (default: all three).
    workloads: { type: 'string', default: 'select,rw,masked' },
    // How pgbouncer, the proxy and the relay reach Postgres: `tcp` (127.0.0.1:5432) or
    // `socket` (its Unix socket in /var/run/postgresql, as a pooler beside its database would).
    upstream: { type: 'string', default: 'tcp' },
    // Extra Node flags for the proxy process, space-separated (e.g. `--perf-basic-prof` for `perf record -p`).
    'proxy-node-args': { type: 'string', default: '' },
  },
});
const SECONDS = Math.max(1, Math.min(120, Number(values.seconds)));
const CLIENTS = Math.max(1, Math.min(64, Number(values.clients)));
const THREADS = Math.max(1, Math.min(CLIENTS, Number(values.threads)));
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' } as const;
const MODE = values.mode === 'prepared' ? 'prepared' : 'simple';
const WORKERS = Math.max(1, Math.min(64, Number(values.workers) || 1));
const SUMMARY_CACHE = !values['no-summary-cache'];
const SCALE = 1;
const PG_SOCKET_DIR = '/var/run/postgresql';
/** The host every proxy under test connects to: the same for pgbouncer, scopegate and the relay. */
const UPSTREAM_HOST = values.upstream === 'socket' ? PG_SOCKET_DIR : PG.host;
const WARMUP_S = 3;

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

/** Wait until something accepts TCP connections on the port (bounded). */
async function waitForPort(port: number, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${what} did not start listening on ${port}`);
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

interface Target {
  name: 'direct' | 'pgbouncer' | 'scopegate' | 'node-pipe';
  port: number;
  user: string;
  database: string;
  password?: string;
  /** The process (with its children) whose CPU is charged to this target; none for direct. */
  pid?: number;
}

interface Result {
  tps: number;
  latencyMs: number;
  load: string;
  /** CPU µs per transaction: the target process (user, system), all of Postgres, and pgbench. */
  cpu: { user: number; sys: number; postgres: number; pgbench: number };
}


async function pgbench(t: Target, workload: string[], seconds = SECONDS): Promise<Result> {
  const env = { ...process.env, PGSSLMODE: 'disable', ...(t.password ? { PGPASSWORD: t.password } : {}) };
  const none = { user: 0, sys: 0 };
  const before = { target: t.pid ? await cpuTimesOf({ root: t.pid }) : none, postgres: await cpuTimesOf({ comm: 'postgres' }), pgbench: await reapedChildrenCpuSeconds() };
  const out = await run(
    'pgbench',
    ['-n', '-M', MODE, '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(seconds), '-h', '127.0.0.1', '-p', String(t.port), '-U', t.user, ...workload, t.database],
    env,
    (seconds + 60) * 1000,
  );
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
  const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
  const failed = /number of failed transactions: (\d+)/.exec(out)?.[1];
  if (!Number.isFinite(tps) || !Number.isFinite(latencyMs)) throw new Error(`unexpected pgbench output:\n${out}`);
  if (failed !== undefined && failed !== '0') throw new Error(`pgbench reported ${failed} failed transactions:\n${out}`);
  const after = { target: t.pid ? await cpuTimesOf({ root: t.pid }) : none, postgres: await cpuTimesOf({ comm: 'postgres' }), pgbench: await reapedChildrenCpuSeconds() };
  const tx = tps * seconds;
  const us = (s: number) => (s * 1e6) / tx;
  const pgTotal = (c: CpuTimes) => c.user + c.sys;
  return {
    tps,
    latencyMs,
    load: load(),
    cpu: {
      user: us(after.target.user - before.target.user),
      sys: us(after.target.sys - before.target.sys),
      postgres: us(pgTotal(after.postgres) - pgTotal(before.postgres)),
      pgbench: us(after.pgbench - before.pgbench),
    },
  };
}

/** Our own pgbouncer: generated ini in a temp dir, daemonised as `postgres` (it refuses root). */
async function startPgbouncer(dir: string, database: string): Promise<{ port: number; pid: number; stop(): void }> {
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  writeFileSync(path.join(dir, 'userlist.txt'), '"postgres" ""\n');
  writeFileSync(
    ini,
    [
      '[databases]',
      `bench = host=${UPSTREAM_HOST} port=${PG.port} dbname=${database} user=postgres`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = session',
      `max_client_conn = ${CLIENTS * 4}`,
      `default_pool_size = ${CLIENTS + 2}`,
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number((await run('id', ['-u', 'postgres'])).trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).trim());
    for (const f of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(path.join(dir, f), uid, gid);
  }
  await run(asRoot ? 'runuser' : 'pgbouncer', asRoot ? ['-u', 'postgres', '--', 'pgbouncer', '-d', ini] : ['-d', ini]);
  await waitForPort(port, 'pgbouncer');
  // The daemonised child may listen before it writes its pidfile.
  let pid = 0;
  for (let i = 0; i < 100 && !pid; i++) {
    try {
      pid = Number(readFileSync(path.join(dir, 'pgbouncer.pid'), 'utf8').trim());
    } catch {
      await sleep(50);
    }
  }
  if (!pid) throw new Error('pgbouncer wrote no pidfile');
  return {
    port,
    pid,
    stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    },
  };
}

/** The pg-proxy as its own process, configured by environment variables like a deployment. */
async function startProxy(pdp: RunningPdp, database: string, profileDir: string | undefined): Promise<{ port: number; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const extra = values['proxy-node-args'].split(' ').filter(Boolean);
  const args = [...extra, '--import', 'tsx', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), path.join(REPO_ROOT, 'shims/pg-proxy/src/main.ts')];
  // In a session of its own, as pgbouncer's `-d` gives pgbouncer (spawnService).
  const child = spawnService(process.execPath, args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      SCOPEGATE_PG_LISTEN_PORT: String(port),
      SCOPEGATE_PG_UPSTREAM_HOST: UPSTREAM_HOST,
      SCOPEGATE_PG_UPSTREAM_PORT: String(PG.port),
      SCOPEGATE_PG_UPSTREAM_DATABASE: database,
      SCOPEGATE_PG_UPSTREAM_USER: PG.user,
      SCOPEGATE_PG_RESOURCE: 'bench-db',
      SCOPEGATE_PDP_URL: pdp.url,
      SCOPEGATE_SHIM_KEY: pdp.shimKey,
      SCOPEGATE_PG_WORKERS: String(WORKERS),
      ...(SUMMARY_CACHE ? {} : { SCOPEGATE_PG_SUMMARY_CACHE_SIZE: '0' }),
    },
  });
  await waitForPort(port, 'pg-proxy');
  return {
    port,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), sleep(10_000)]);
    },
  };
}

/**
 * A byte-for-byte TCP relay in a Node process of its own (no parsing, no policy): what a
 * Node hop costs on this machine, to tell the proxy's own work from the runtime's.
 */
async function startNodePipe(): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const code = `const net=require('node:net');net.createServer((s)=>{s.setNoDelay(true);const u=net.connect(${JSON.stringify(UPSTREAM_HOST.startsWith('/') ? { path: `${UPSTREAM_HOST}/.s.PGSQL.${PG.port}` } : { host: PG.host, port: PG.port })});u.setNoDelay(true);s.pipe(u);u.pipe(s);s.on('error',()=>u.destroy());u.on('error',()=>s.destroy());}).listen(${port},'127.0.0.1');`;
  const child = spawnService(process.execPath, ['-e', code], { stdio: 'ignore' });
  await waitForPort(port, 'node pipe');
  return {
    port,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), sleep(5000)]);
    },
  };
}

/** Top self-time functions of a V8 CPU profile. */
function summariseProfile(file: string, top = 25): string {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const counts = new Map<string, number>();
  for (const id of prof.samples) {
    const n = byId.get(id);
    if (!n) continue;
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(REPO_ROOT + '/', '')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const total = prof.samples.length;
  const busy = total - (counts.get('(idle)') ?? 0);
  const byArea = new Map<string, number>();
  for (const id of prof.samples) {
    const url = byId.get(id)?.callFrame.url ?? '';
    const name = byId.get(id)?.callFrame.functionName ?? '';
    if (name === '(idle)') continue;
    const area = url.includes('/shims/') ? url.replace(/^.*\/shims\//, 'shims/') : url.includes('node_modules/') ? url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1') : url.startsWith('node:') ? 'node internals' : name || '(native)';
    byArea.set(area, (byArea.get(area) ?? 0) + 1);
  }
  const areas = [...byArea.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([k, v]) => `${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
  return `busy ${((100 * busy) / total).toFixed(1)}% of samples; share of busy time by area:\n${areas}\n\ntop self time (of all samples):\n` + [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
}

async function main(): Promise<void> {
  console.log(
    `pg-proxy benchmark: ${CLIENTS} clients, ${THREADS} threads, ${SECONDS} s per phase, scale ${SCALE}, -M ${MODE}; proxy workers ${WORKERS}, summary cache ${SUMMARY_CACHE ? 'on' : 'off'}; upstream over ${UPSTREAM_HOST.startsWith("/") ? "the Unix socket" : "TCP"}; ${os.cpus().length} CPUs`,
  );
  console.log(`load average at start: ${load()}`);
  const database = `sg_bench_pgproxy_${randomBytes(4).toString('hex')}`;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-pgproxy-'));
  const policyExt = path.join(tmp, 'policy-ext');
  // Its own temp dir: pgbouncer runs as `postgres`, which must be able to reach it.
  const bouncerDir = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-pgbouncer-'));
  const profileDir = values.profile ? path.join(tmp, 'profile') : undefined;
  const cleanups: Array<() => Promise<void> | void> = [
    () => rmSync(tmp, { recursive: true, force: true }),
    () => rmSync(bouncerDir, { recursive: true, force: true }),
  ];
  try {
    const admin = new pg.Client({ ...PG, database: 'test' });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    cleanups.unshift(async () => {
      const a = new pg.Client({ ...PG, database: 'test' });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await a.end();
    });
    await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', PG.host, '-p', String(PG.port), '-U', PG.user, database]);

    // The default policy plus a bench resource with one sensitive column, so masking is on.
    mkdirSync(policyExt);
    writeFileSync(
      path.join(policyExt, 'data.json'),
      JSON.stringify({ scopegate_config: { sql: { resources: { 'bench-db': { production: false, sensitive_columns: { 'public.pgbench_accounts.filler': 'redact' } } } } } }),
    );
    const pdp = await startPdp({ env: { SCOPEGATE_POLICY_DIR: `${BUNDLED_POLICY_DIR}:${policyExt}`, SCOPEGATE_POLICY_BUNDLE: '', SCOPEGATE_TOKEN_MAX_TTL_S: '3600' } });
    cleanups.unshift(() => pdp.close());
    const token = await pdp.mint('pgbench', ['sql:bench-db:*:public.pgbench_*'], { ttl_s: 3600 });

    const proxy = await startProxy(pdp, database, profileDir);
    cleanups.unshift(() => proxy.stop());
    const bouncer = await startPgbouncer(bouncerDir, database);
    cleanups.unshift(() => bouncer.stop());

    const maskedScript = path.join(tmp, 'select-masked.sql');
    writeFileSync(maskedScript, `\\set aid random(1, ${100000 * SCALE})\nSELECT aid, filler FROM pgbench_accounts WHERE aid = :aid;\n`);
    const targets: Target[] = [
      { name: 'direct', port: PG.port, user: PG.user, database },
      { name: 'pgbouncer', port: bouncer.port, user: 'postgres', database: 'bench', pid: bouncer.pid },
      { name: 'scopegate', port: proxy.port, user: 'agent', database: 'bench', password: token, pid: proxy.child.pid ?? 0 },
    ];
    if (values['baseline-pipe']) {
      const pipe = await startNodePipe();
      cleanups.unshift(() => pipe.stop());
      targets.push({ name: 'node-pipe', port: pipe.port, user: PG.user, database, pid: pipe.pid });
    }
    const chosen = new Set(values.workloads.split(',').map((w) => w.trim()));
    const workloads: Array<{ name: string; args: string[] }> = [
      { key: 'select', name: 'select-only (-S)', args: ['-S'] },
      { key: 'rw', name: 'read/write (-b simple-update)', args: ['-b', 'simple-update'] },
      { key: 'masked', name: 'select masked column (-f)', args: ['-f', maskedScript] },
    ].filter((w) => chosen.has(w.key));

    // Proof that masking is on: the filler column comes back redacted through the proxy.
    const check = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'agent', database: 'bench', password: token });
    await check.connect();
    const sample = (await check.query('select aid, filler from pgbench_accounts where aid = 1')).rows[0] as { filler: unknown };
    await check.end();
    console.log(`masking check through the proxy: filler = ${JSON.stringify(sample.filler)}`);

    // Warm-up (not recorded): the proxy's JIT, the libpg-query WASM module, the PDP client's
    // cache and the catalog cache start cold; pgbouncer and Postgres have caches too.
    for (const t of targets) await pgbench(t, ['-S'], WARMUP_S);
    console.log(`warm-up done (${WARMUP_S} s per target, select-only)`);

    const rows: Array<{ workload: string; results: Record<string, Result> }> = [];
    for (const w of workloads) {
      const results: Record<string, Result> = {};
      for (const t of targets) {
        results[t.name] = await pgbench(t, w.args);
        const r = results[t.name] as Result;
        const cpu = `${t.pid ? `${t.name} ${r.cpu.user.toFixed(1)} user + ${r.cpu.sys.toFixed(1)} sys, ` : ''}postgres ${r.cpu.postgres.toFixed(1)}, pgbench ${r.cpu.pgbench.toFixed(1)}`;
        console.log(`  ${w.name.padEnd(30)} ${t.name.padEnd(10)} ${r.tps.toFixed(0).padStart(7)} tps  ${r.latencyMs.toFixed(3).padStart(7)} ms avg  CPU µs/tx: ${cpu}  (load ${r.load})`);
      }
      rows.push({ workload: w.name, results });
    }

    console.log('\n| workload | mode | proxy workers | direct TPS | pgbouncer TPS | scopegate TPS | scopegate / pgbouncer | scopegate / direct | latency direct / pgbouncer / scopegate (ms) |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const { workload, results } of rows) {
      const d = results.direct as Result;
      const b = results.pgbouncer as Result;
      const s = results.scopegate as Result;
      console.log(
        `| ${workload} | ${MODE} | ${WORKERS} | ${d.tps.toFixed(0)} | ${b.tps.toFixed(0)} | ${s.tps.toFixed(0)} | **${(s.tps / b.tps).toFixed(2)}×** | ${(s.tps / d.tps).toFixed(2)}× | ${d.latencyMs.toFixed(2)} / ${b.latencyMs.toFixed(2)} / ${s.latencyMs.toFixed(2)} |`,
      );
    }
    if (values['baseline-pipe']) {
      for (const { workload, results } of rows) {
        const p = results['node-pipe'] as Result;
        console.log(`node-pipe baseline, ${workload}: ${p.tps.toFixed(0)} TPS, ${p.latencyMs.toFixed(2)} ms (${(p.tps / (results.pgbouncer as Result).tps).toFixed(2)}× pgbouncer)`);
      }
    }
    // How many statements reached the PDP (the rest were answered by the proxy's local cache).
    const metrics = (await pdp.app.inject({ method: 'GET', url: '/metrics' })).body;
    const asked = metrics
      .split('\n')
      .filter((l) => l.startsWith('scopegate_decisions_total{'))
      .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    console.log(`decisions answered by the PDP during the run: ${asked}`);
    console.log(`\nload average at end: ${load()}`);

    if (profileDir) {
      await proxy.stop();
      const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
      for (const f of files) console.log(`\npg-proxy CPU profile (${f}), top self time:\n${summariseProfile(path.join(profileDir, f))}`);
    }
  } finally {
    for (const c of cleanups) {
      try {
        await c();
      } catch (err) {
        console.error(`cleanup failed: ${(err as Error).message}`);
      }
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
