/**
 * `/v1/decide` latency with the decision log on vs off, in one run: two PDP processes on the
 * same machine, each with its own throwaway database on the local Postgres, first probed for
 * peak throughput, then driven at a fixed rate (half the slower one's peak unless
 * `--rate-fraction`) on an even schedule; p50/p99 are measured from when each request was
 * due. Requests repeat one warm decision with a rotating session id, so every answer is a new
 * log row. Each PDP runs in a session of its own, as a service would (spawnService), and
 * every round prints the share of its time during which some task waited for a CPU.
 *
 * On a small shared machine one 10-second p99 swings by several times between identical
 * runs (a few scheduler stalls decide it), so the paced part is run as several short rounds
 * that alternate which server goes first; the figure compared is each side's median p99 over
 * the rounds, and every round is printed.
 *
 *   npx tsx bench/decision-log/decide-p99.ts [--duration 10] [--rounds 6] [--round-seconds 5]
 *        [--spool-memory auto|off|PATH]   (the logging server's spool memory tier; default auto)
 *        [--pg-via auto|socket|tcp]        (both PDPs' way to Postgres; default tcp)
 *        [--generator vegeta|node]         (the paced load generator; default vegeta)
 *        [--rate-fraction 0.5]             (the paced rate as a share of the slower peak)
 *        [--pdp-cpus 0]                    (PDPs on these CPUs; Postgres, vegeta and this process on the rest)
 *        [--control]                       (both PDPs without the log: the ratio of two identical servers)
 *        [--equal-db-load]                 (the same database work beside the server that does not log; with --control, beside both)
 *
 * `--control` runs the same method on two servers that do not log (an A/A test): how far
 * from 1.00× its ratio lands is the method's own noise on the machine at that time, against
 * which a logging ratio can be read.
 *
 * `--equal-db-load` gives both sides the same database work. While the server without the log
 * is driven, db-load.ts streams rows into its database at the paced rate the way the writer's
 * live COPY does (at idle CPU priority, so only Postgres's part of it competes). The load generator
 * shares its CPUs with Postgres, so without this the logging server's p99 also carries the
 * delays that Postgres's ingest causes the generator, which a deployment (database on its own
 * host) would not have; with it, the two sides differ only in the PDP's own part of logging.
 *
 * `--pdp-cpus` lays out a deployment's topology on one machine: a PDP on cores of its own,
 * with its database and its clients elsewhere. By default everything shares every core, so
 * the logging server's Postgres work competes with the PDP itself for the same CPUs; with
 * the split, each side's p99 carries only its own process's work. It pins the shared
 * Postgres's processes with taskset (root) and gives them every CPU back at the end.
 *
 * The paced rounds are driven by vegeta (a Go binary, installed on first use by
 * scripts/ensure-vegeta.sh) unless `--generator node`: this process's own generator costs
 * most of a core and adds about a millisecond of its own lag to every latency it measures,
 * which on two cores hid most of the server's latency (p50 ~1.3 ms vs ~0.2 ms with vegeta).
 *
 * Target (issue 4): p99 with logging ≤ 1.2 × p99 without.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createThrowawayDatabase, type ThrowawayDatabase } from '../../test/cluster/test-services.js';
import { existsSync } from 'node:fs';
import { runLoad, runPaced as runPacedNode, type PacedSpec, type PhaseResult } from '../pdp-vs-opa/load.js';
import { runVegeta } from '../pdp-vs-opa/vegeta.js';
import { ALL_CPUS, cpuSeconds, cpuStallMicros, cpuTimesOf, pinProcesses } from '../pdp-vs-opa/machine.js';
import { startScopegate, spawnService, stopChild, type RunningScopegate } from '../pdp-vs-opa/servers.js';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import { BENCH_SCOPES, decideBody } from '../pdp-vs-opa/workload.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '6' },
    'round-seconds': { type: 'string', default: '5' },
    // The spool's memory tier of the logging server (SCOPEGATE_SPOOL_MEMORY_DIR): auto | off | a path.
    'spool-memory': { type: 'string', default: 'auto' },
    // How both PDPs reach Postgres: `tcp` (127.0.0.1, the default), `socket` (its Unix socket
    // in /var/run/postgresql, as a PDP beside its database would connect), or `auto` (the
    // socket when present).
    'pg-via': { type: 'string', default: 'tcp' },
    generator: { type: 'string', default: 'vegeta' },
    // The paced rate as a share of the slower server's peak (default: half).
    'rate-fraction': { type: 'string', default: '0.5' },
    // A `taskset` CPU list for both PDPs; everything else of the run goes on the other CPUs.
    'pdp-cpus': { type: 'string' },
    // Both servers without the decision log (A/A): the method's noise floor.
    control: { type: 'boolean', default: false },
    // The same database ingest beside the server that does not log (see db-load.ts).
    'equal-db-load': { type: 'boolean', default: false },
  },
});
const PDP_CPUS = values['pdp-cpus'];
/** The CPUs not in the PDPs' list: Postgres, the load generator and this process. */
const OTHER_CPUS = PDP_CPUS === undefined ? undefined : otherCpus(PDP_CPUS);

function otherCpus(list: string): string {
  const taken = new Set<number>();
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    if (!Number.isInteger(a) || (b !== undefined && !Number.isInteger(b))) throw new Error(`--pdp-cpus: not a CPU list: ${list}`);
    for (let c = a!; c <= (b ?? a!); c++) taken.add(c);
  }
  const rest = Array.from({ length: os.availableParallelism() }, (_, c) => c).filter((c) => !taken.has(c));
  if (rest.length === 0 || taken.size === 0) throw new Error(`--pdp-cpus ${list} must leave some of the ${os.availableParallelism()} CPUs to the others`);
  return rest.join(',');
}
const RATE_FRACTION = Number(values['rate-fraction']);
if (!(RATE_FRACTION > 0 && RATE_FRACTION <= 1)) throw new Error('--rate-fraction must be in (0, 1]');
const DURATION = Number(values.duration);
const ROUNDS = Math.max(1, Number(values.rounds));
const ROUND_SECONDS = Math.max(1, Number(values['round-seconds']));
const CONNECTIONS = Number(values.connections);
interface Target {
  label: string;
  server: RunningScopegate;
  token: string;
  db: ThrowawayDatabase;
  dir: string;
}

if (values.generator !== 'vegeta' && values.generator !== 'node') throw new Error('--generator must be vegeta or node');
const runPaced: (spec: PacedSpec) => Promise<PhaseResult> = values.generator === 'vegeta' ? runVegeta : runPacedNode;

const PG_SOCKET_DIR = '/var/run/postgresql';
const PG_VIA = values['pg-via'] === 'auto' ? (existsSync(path.join(PG_SOCKET_DIR, '.s.PGSQL.5432')) ? 'socket' : 'tcp') : values['pg-via'];

/** The throwaway database's URL as the PDPs use it (over the Unix socket or TCP). */
function pdpDatabaseUrl(db: ThrowawayDatabase): string {
  if (PG_VIA !== 'socket') return db.url;
  const u = new URL(db.url);
  u.hostname = 'localhost';
  u.port = '';
  u.searchParams.set('host', PG_SOCKET_DIR);
  return u.toString();
}

async function start(label: string, logOn: boolean): Promise<Target> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `sg-bench-${label}-`));
  const db = await createThrowawayDatabase();
  const server = await startScopegate({
    dataDir: dir,
    env: { DATABASE_URL: pdpDatabaseUrl(db), SCOPEGATE_DECISION_LOG: String(logOn && !values.control), SCOPEGATE_CACHE: 'memory', SCOPEGATE_SPOOL_MEMORY_DIR: values['spool-memory'] },
  });
  if (PDP_CPUS !== undefined) pinProcesses({ pid: server.pid }, PDP_CPUS);
  const res = await fetch(`${server.url}/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` },
    body: JSON.stringify({ sub: 'bench', scopes: BENCH_SCOPES, ttl_s: 3600 }),
  });
  const { token } = (await res.json()) as { token: string };
  return { label, server, token, db, dir };
}

function spec(t: Target) {
  let i = 0;
  return {
    url: t.server.url,
    path: '/v1/decide',
    headers: { authorization: `Bearer ${t.server.shimKey}` },
    body: () => {
      const b = decideBody(t.token, 'public.orders');
      b.context = { ...b.context, session_id: `bench-${i++ % 1000}` };
      return JSON.stringify(b);
    },
    connections: CONNECTIONS,
    durationS: DURATION,
    cpuList: OTHER_CPUS,
    verify: (body: string) => body.includes('"effect":"allow"'),
  };
}

async function rowCount(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM decision_log')).rows[0]!.n);
  } finally {
    await c.end();
  }
}

/** CPU seconds used so far by Postgres (its running processes and the backends it has reaped). */
async function postgresCpuSeconds(): Promise<number> {
  const t = await cpuTimesOf({ comm: 'postgres' });
  return t.user + t.sys;
}

/** Run a phase and add the CPU the PDP and Postgres spent per answer (µs). */
async function measured<T extends PhaseResult>(t: Target, run: () => Promise<T>): Promise<T & { pdpUs: number; pgUs: number; stallShare: number }> {
  const [pdp0, pg0, stall0, t0] = [(await cpuSeconds(t.server.pid)) ?? 0, await postgresCpuSeconds(), await cpuStallMicros(), performance.now()];
  const r = await run();
  const [pdp1, pg1, stall1, t1] = [(await cpuSeconds(t.server.pid)) ?? 0, await postgresCpuSeconds(), await cpuStallMicros(), performance.now()];
  const per = (s: number) => (r.count > 0 ? (s * 1e6) / r.count : Number.NaN);
  // Share of the phase during which some task waited for a CPU (Linux PSI): how saturated the machine was.
  const stallShare = stall0 !== undefined && stall1 !== undefined ? (stall1 - stall0) / ((t1 - t0) * 1000) : Number.NaN;
  return { ...r, pdpUs: per(pdp1 - pdp0), pgUs: per(pg1 - pg0), stallShare };
}

const EQUAL_DB_LOAD = values['equal-db-load'];

/**
 * Run `phase` with db-load.ts streaming `rate` rows/s into `t`'s database at idle CPU priority
 * (on the CPUs outside --pdp-cpus), started a second ahead so its COPY is flowing.
 */
async function withDbLoad<T>(t: Target, rate: number, phase: () => Promise<T>): Promise<T> {
  const script = path.join(REPO_ROOT, 'bench', 'decision-log', 'db-load.ts');
  const args = ['--idle', '0', ...(OTHER_CPUS !== undefined ? ['taskset', '-c', OTHER_CPUS] : []), process.execPath, '--import', 'tsx', script, t.db.url, String(rate)];
  const child = spawnService('chrt', args, { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    if (child.exitCode !== null) throw new Error(`db-load.ts exited early (${child.exitCode})`);
    return await phase();
  } finally {
    await stopChild(child);
  }
}

const fmt = (r: PhaseResult) =>
  `${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  errors ${r.errors + r.non2xx + r.mismatches}` +
  (Number.isNaN(r.generatorLagP99Ms) ? '' : `  generator lag p99 ${r.generatorLagP99Ms.toFixed(1)} ms`);

const targets: Target[] = [];
try {
  if (OTHER_CPUS !== undefined) {
    // Interrupted, the run must still hand the shared Postgres its CPUs back.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        pinProcesses({ comm: 'postgres' }, ALL_CPUS);
        process.exit(128 + os.constants.signals[signal]);
      });
    }
    pinProcesses({ pid: process.pid }, OTHER_CPUS);
    pinProcesses({ comm: 'postgres' }, OTHER_CPUS);
  }
  console.log(`load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cpus); spool memory tier: ${values['spool-memory']}; PDPs reach Postgres over ${PG_VIA}; paced load by ${values.generator}`);
  if (values.control) console.log('control run: neither server logs; "log_on" is a second copy of "log_off"');
  if (EQUAL_DB_LOAD) console.log(`equal database load: db-load.ts streams the paced rate of rows into the database of ${values.control ? 'each server' : '"log_off"'} while it is driven`);
  if (OTHER_CPUS !== undefined) console.log(`CPU split: PDPs on CPU ${PDP_CPUS}; Postgres, the load generator and this process on CPU ${OTHER_CPUS}`);
  targets.push(await start('log_on', true), await start('log_off', false));
  for (const t of targets) await runLoad({ ...spec(t), durationS: 2 }); // warm-up
  const peak: Record<string, PhaseResult> = {};
  for (const t of targets) {
    const m = await measured(t, () => runLoad(spec(t)));
    peak[t.label] = m;
    console.log(`peak ${t.label.padEnd(8)} ${fmt(m)}  CPU/decision: PDP ${m.pdpUs.toFixed(0)} µs, Postgres ${m.pgUs.toFixed(0)} µs`);
  }
  const rate = Math.floor(Math.min(...Object.values(peak).map((r) => r.rps)) * RATE_FRACTION);
  // One paced round each at the measured rate first, not counted: the first seconds at a new
  // rate (timers, pools, the log's first partitions and COPYs) are slower on both sides.
  for (const t of targets) await runPaced({ ...spec(t), durationS: 2, rate, graceS: 3 });
  /**
   * The series driven in each round. With --equal-db-load the server without the log is
   * driven twice, with the database load beside it (the series the target is read on) and
   * without (the plain comparison), so one run also shows how much of the plain ratio is the
   * database's work slowing the load generator rather than the PDP.
   */
  interface Series { label: string; target: Target; dbLoad: boolean }
  const [logOn, logOff] = targets as [Target, Target];
  // In a control run both servers are alike, so both get the database load (the A/A of this method).
  const series: Series[] = [{ label: 'log_on', target: logOn, dbLoad: EQUAL_DB_LOAD && values.control }, { label: 'log_off', target: logOff, dbLoad: EQUAL_DB_LOAD }];
  if (EQUAL_DB_LOAD) series.push({ label: 'log_off, no db load', target: logOff, dbLoad: false });
  const rounds = new Map<Series, Array<PhaseResult & { pdpUs: number; pgUs: number }>>(series.map((x) => [x, []]));
  // Rotate the order every round so drift in machine load hits every series alike.
  for (let round = 0; round < ROUNDS; round++) {
    const order = series.map((_, i) => series[(i + round) % series.length]!);
    for (const x of round % 2 === 0 ? order : order.reverse()) {
      const t = x.target;
      // Measured inside withDbLoad: its start and stop are not part of the round.
      const paced = () => measured(t, () => runPaced({ ...spec(t), durationS: ROUND_SECONDS, rate, graceS: 3 }));
      const r = await (x.dbLoad ? withDbLoad(t, rate, paced) : paced());
      rounds.get(x)!.push(r);
      console.log(`round ${round + 1} ${x.label.padEnd(8)} @ ${rate}/s ${fmt(r)}  CPU/decision: PDP ${r.pdpUs.toFixed(0)} µs, Postgres ${r.pgUs.toFixed(0)} µs  (load ${os.loadavg()[0]!.toFixed(2)}, CPU wait ${(r.stallShare * 100).toFixed(0)}% of the round)`);
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const summary = (x: Series) => {
    const rs = rounds.get(x)!;
    return {
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      pdpUs: median(rs.map((r) => r.pdpUs)),
      pgUs: median(rs.map((r) => r.pgUs)),
    };
  };
  const logged = await rowCount(logOn.db.url);
  console.log('');
  console.log(`| decision log | peak req/s | median p50 at the paced rate (ms) | median p99 at the paced rate (ms) | PDP CPU/decision (µs) | Postgres CPU/decision (µs) |`);
  console.log('|---|---:|---:|---:|---:|---:|');
  const [on, off, bare] = series.map((x) => {
    const m = summary(x);
    const name = (x.label === 'log_on' ? 'on' : 'off') + (x.dbLoad ? ', with db load' : '');
    console.log(`| ${name} | ${peak[x.target.label]!.rps.toFixed(0)} | ${m.p50Ms.toFixed(3)} | ${m.p99Ms.toFixed(3)} | ${m.pdpUs.toFixed(0)} | ${m.pgUs.toFixed(0)} |`);
    return m;
  }) as [ReturnType<typeof summary>, ReturnType<typeof summary>, ReturnType<typeof summary> | undefined];
  const ratio = on.p99Ms / off.p99Ms;
  const what = EQUAL_DB_LOAD ? 'on/off with the same database load' : 'on/off';
  console.log(`\nmedian p99 ${what} over ${ROUNDS} rounds of ${ROUND_SECONDS} s at ${rate}/s: ${ratio.toFixed(2)}× (target ≤ 1.2×: ${ratio <= 1.2 ? 'MET' : 'MISSED'}); rows in the "on" server's decision_log: ${logged}`);
  if (bare) {
    console.log(`median p99 on/off without the database load beside "off": ${(on.p99Ms / bare.p99Ms).toFixed(2)}×`);
    console.log(`the database load alone, "off" with it / without it: ${(off.p99Ms / bare.p99Ms).toFixed(2)}×`);
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  for (const t of targets) {
    await t.server.stop();
    await t.db.drop().catch(() => {});
    await rm(t.dir, { recursive: true, force: true });
  }
  // Postgres is shared: give every one of its processes (backends forked meanwhile included) all CPUs back.
  if (OTHER_CPUS !== undefined) pinProcesses({ comm: 'postgres' }, ALL_CPUS);
}
