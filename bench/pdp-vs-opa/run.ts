/**
 * scopegate vs `opa run --server`: the same Rego library, the same inputs, on this machine,
 * in one run. Both servers verify the same EdDSA-signed scoped JWT per decision (scopegate
 * with jose, OPA in Rego with io.jwt.decode_verify) and evaluate `scopegate/main/decision`.
 *
 *   npm run bench:pdp [-- --duration 10 --connections 16 --profile <dir>]
 *
 * Phases (each server in turn, scopegate first):
 *   warm-up  JIT and connections; its rate sizes the token pool (not reported)
 *   cold     closed loop, every request unique: fresh token + fresh relation name
 *   warm     closed loop, one request repeated
 *   @½ peak  open loop at half of scopegate's peak (cold, then warm inputs); OPA at the same
 *            rate unless that is above OPA's own peak
 *
 * Exits 1 when a phase's figures are unreliable (errors, non-allow answers, reused cold
 * tokens, requests left unanswered); the table is printed either way.
 * See docs/benchmarks.md for the recorded figures and how to read them.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import pino from 'pino';
import stringify from 'safe-stable-stringify';
import { loadConfig } from '../../pdp-server/src/config.js';
import type { DecideRequest } from '../../pdp-server/src/contract.js';
import { findOpa } from '../../pdp-server/src/policy/opa-cli.js';
import { createTokenService, type TokenService } from '../../pdp-server/src/tokens/token-service.js';
import { runLoad, runPaced, type PhaseResult } from './load.js';
import { phaseProblems, ratio, resultsTable, targetsTable, times, type Row, type TargetCheck } from './report.js';
import { watchPhase } from './machine.js';
import { startOpa, startScopegate, type RunningScopegate, type RunningServer } from './servers.js';
import {
  apiMint,
  BENCH_SCOPES,
  BENCH_TOKEN_TTL_S,
  decideBody,
  frame,
  RelationSequence,
  TokenPool,
  type Target,
} from './workload.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    'paced-connections': { type: 'string', default: '32' },
    profile: { type: 'string' },
  },
});
const positive = (name: string, v: string | undefined, max: number): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`--${name} must be a number in (0, ${max}]`);
  return n;
};
const DURATION_S = positive('duration', args.duration, 120);
const WARMUP_S = positive('warmup', args.warmup, 60);
const CONNECTIONS = Math.round(positive('connections', args.connections, 1024));
const PACED_CONNECTIONS = Math.round(positive('paced-connections', args['paced-connections'], 1024));
/**
 * Tokens minted per cold request expected from the warm-up rate, so a phase that runs
 * faster than the (short, JIT-cold) warm-up suggested still never reuses one.
 */
const TOKEN_HEADROOM = 3;
const MIN_COLD_TOKENS = 20_000;
/** How long a fixed-rate phase waits for stragglers before cutting the rest off as unanswered. */
const PACED_GRACE_S = 3;
/** Size of the PDP's verified-token LRU (token-service DEFAULT_CACHE_ENTRIES); OPA's io_jwt cache gets the same. */
const JWT_CACHE_ENTRIES = 10_000;

/** Both answers carry the decision as compact JSON. */
const isAllow = (body: string) => body.includes('"effect":"allow"');

interface Servers {
  scopegate: RunningScopegate;
  opa: RunningServer;
}

function loadTarget(servers: Servers, target: Target) {
  const s = servers[target];
  return target === 'scopegate'
    ? { url: s.url, path: '/v1/decide', headers: { authorization: `Bearer ${servers.scopegate.shimKey}` } }
    : { url: s.url, path: '/v1/data/bench/decision', headers: {} };
}

/** The decision part both servers return, to check they agree before measuring anything. */
async function decisionOf(servers: Servers, target: Target, body: DecideRequest): Promise<unknown> {
  const t = loadTarget(servers, target);
  const res = await fetch(t.url + t.path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...t.headers },
    body: frame(target, body),
  });
  if (res.status !== 200) throw new Error(`${target} answered ${res.status}: ${await res.text()}`);
  const json = (await res.json()) as Record<string, unknown>;
  const d = (target === 'opa' ? json.result : json) as Record<string, unknown> | undefined;
  return { effect: d?.effect, reasons: d?.reasons, obligations: d?.obligations, ttl_ms: d?.ttl_ms };
}

async function assertSameDecision(servers: Servers, label: string, body: DecideRequest): Promise<void> {
  const a = stringify(await decisionOf(servers, 'scopegate', body));
  const b = stringify(await decisionOf(servers, 'opa', body));
  if (a !== b) throw new Error(`scopegate and OPA disagree on the ${label} request:\n  scopegate ${a}\n  opa       ${b}`);
  if (!a?.includes('"effect":"allow"')) throw new Error(`the ${label} request is not an allow: ${a}`);
  console.log(`  ${label}: both servers answer ${a}`);
}

async function opaVersion(opaBin: string): Promise<string> {
  const { stdout } = await promisify(execFile)(opaBin, ['version'], { encoding: 'utf8' });
  return /^Version:\s*(\S+)/m.exec(stdout)?.[1] ?? 'unknown';
}

async function main(): Promise<void> {
  const opaBin = await findOpa(process.env.SCOPEGATE_OPA_BIN);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-bench-'));
  const profileDir = args.profile !== undefined ? path.resolve(args.profile) : undefined;
  if (profileDir !== undefined) await mkdir(profileDir, { recursive: true });
  const cpus = os.cpus();
  console.log('scopegate vs OPA — one run on this machine');
  console.log(
    `  machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'cpu'}, node ${process.version}, opa ${await opaVersion(opaBin)}; ` +
      `load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
  console.log('  the load generator (this process) and both servers share these cores; nothing is pinned.');
  console.log(
    `  phases: ${WARMUP_S} s warm-up, ${DURATION_S} s measured; ${CONNECTIONS} connections closed-loop, ` +
      `${PACED_CONNECTIONS} open-loop at fixed rate`,
  );

  let servers: Servers | undefined;
  let scopegate: RunningScopegate | undefined;
  let minter: TokenService | undefined;
  // A CPU profile starts with the PDP process; phase times are printed relative to this.
  const spawnedAt = Date.now();
  const sinceSpawn = () => ((Date.now() - spawnedAt) / 1000).toFixed(1);
  try {
    const dataDir = path.join(workDir, 'pdp-data');
    scopegate = await startScopegate({
      dataDir,
      // The same work OPA does: no decision log (OPA's is off by default), in-process cache.
      env: { SCOPEGATE_CACHE: 'memory', SCOPEGATE_DECISION_LOG: 'false' },
      cpuProfDir: profileDir,
    });
    const jwks: unknown = await (await fetch(`${scopegate.url}/.well-known/jwks.json`)).json();
    const opa = await startOpa({ opaBin, workDir, jwks, jwtCacheEntries: JWT_CACHE_ENTRIES });
    servers = { scopegate, opa };
    console.log(`  scopegate pid ${scopegate.pid} at ${scopegate.url}; opa pid ${opa.pid} at ${opa.url}`);

    // Cold phases need tens of thousands of distinct tokens. POST /v1/tokens would spend a
    // minute of the run on them, so they are minted here by the PDP's own token service
    // over the PDP's data folder: the same code and the same signing key, without HTTP.
    // The warm token comes through the API, and both kinds are checked to decide alike.
    minter = await createTokenService(
      loadConfig({ SCOPEGATE_DATA_DIR: dataDir, SCOPEGATE_LOG_LEVEL: 'warn' }),
      pino({ level: 'warn' }),
    );
    const mintLocal = minter;
    const pool = new TokenPool(
      async () => (await mintLocal.mint({ sub: 'bench-agent', scopes: BENCH_SCOPES, ttl_s: BENCH_TOKEN_TTL_S })).token,
    );
    const relations = new RelationSequence();
    const warmToken = await apiMint(scopegate.url, scopegate.adminKey)();
    const warmBody = (target: Target) => frame(target, decideBody(warmToken, 'public.customers'));
    const coldBody = (target: Target) => frame(target, decideBody(pool.next(target), relations.next(target)));

    console.log('\nchecking both servers decide alike');
    await assertSameDecision(servers, 'warm', decideBody(warmToken, 'public.customers'));
    await pool.ensure('scopegate', 1);
    pool.next('opa'); // the same token, so neither server meets it again in a cold phase
    await assertSameDecision(servers, 'cold', decideBody(pool.next('scopegate'), 'public.bench_check'));

    const targets: Target[] = ['scopegate', 'opa'];
    const s = servers;
    /** Runs a phase; charges the server process's CPU time to it and notes the machine's CPU pressure. */
    const measured = async (target: Target, run: () => Promise<PhaseResult>): Promise<PhaseResult> => {
      const from = sinceSpawn();
      const done = await watchPhase(s[target].pid);
      const r = await run();
      const { cpuSeconds, stallShare } = await done();
      if (target === 'scopegate' && profileDir !== undefined) console.log(`  (profile window +${from}–${sinceSpawn()} s)`);
      if (cpuSeconds !== undefined && r.count > 0) r.cpuUsPerDecision = (cpuSeconds * 1e6) / r.count;
      r.cpuStallShare = stallShare;
      await sleep(1000); // let the server settle (GC, sockets) before the next phase
      return r;
    };
    const closed = (target: Target, body: () => string, durationS: number) =>
      measured(target, () => runLoad({ ...loadTarget(s, target), body, connections: CONNECTIONS, durationS, verify: isAllow }));
    const paced = (target: Target, body: () => string, rate: number) =>
      measured(target, () =>
        runPaced({
          ...loadTarget(s, target),
          body,
          rate,
          connections: PACED_CONNECTIONS,
          durationS: DURATION_S,
          graceS: PACED_GRACE_S,
          verify: isAllow,
        }),
      );

    console.log('\nwarm-up (unique relations, one token)');
    const estimate: Record<Target, number> = { scopegate: 0, opa: 0 };
    let warmupSeq = 0;
    for (const t of targets) {
      const r = await closed(t, () => frame(t, decideBody(warmToken, `public.warmup_${warmupSeq++}`)), WARMUP_S);
      estimate[t] = r.rps;
      console.log(`  ${t}: ${Math.round(r.rps)} req/s`);
    }

    const mintStart = Date.now();
    let minted = 0;
    for (const t of targets) {
      minted += await pool.ensure(t, Math.max(MIN_COLD_TOKENS, Math.ceil(estimate[t] * DURATION_S * TOKEN_HEADROOM)));
    }
    console.log(`\nminted ${minted} tokens with the PDP's signing key in ${((Date.now() - mintStart) / 1000).toFixed(1)} s`);

    const results: Record<string, Partial<Record<Target, PhaseResult>>> = {};
    const problems: string[] = [];
    const record = (phase: string, t: Target, r: PhaseResult) => {
      (results[phase] ??= {})[t] = r;
      problems.push(...phaseProblems(`${phase} / ${t}`, r));
      console.log(
        `  ${phase.padEnd(22)} ${t.padEnd(9)} ${Math.round(r.rps).toString().padStart(6)} req/s  ` +
          `p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  ` +
          `CPU ${r.cpuUsPerDecision?.toFixed(0) ?? 'n/a'} µs/decision  (${r.count} answers; ` +
          `CPU stall ${r.cpuStallShare !== undefined ? `${Math.round(r.cpuStallShare * 100)}%` : 'n/a'}, ` +
          `generator lag p99 ${r.generatorLagP99Ms.toFixed(1)} ms)`,
      );
    };

    console.log(`\nmeasuring (from +${sinceSpawn()} s after the PDP started)`);
    for (const t of targets) {
      record('cold', t, await closed(t, () => coldBody(t), DURATION_S));
      const reused = pool.reuseCount(t);
      if (reused > 0) problems.push(`cold / ${t}: ${reused} requests reused a token (pool too small)`);
    }
    for (const t of targets) record('warm', t, await closed(t, () => warmBody(t), DURATION_S));

    const peakCold = results.cold?.scopegate?.rps ?? 0;
    const peakWarm = results.warm?.scopegate?.rps ?? 0;
    const halfCold = Math.max(1, Math.round(peakCold / 2));
    const halfWarm = Math.max(1, Math.round(peakWarm / 2));
    for (const t of targets) await pool.ensure(t, Math.ceil(halfCold * DURATION_S * 1.05));
    const coldHalf = `cold @ ${halfCold} req/s`;
    const warmHalf = `warm @ ${halfWarm} req/s`;
    // OPA is run at the same rates for comparison, unless a rate is above its own closed-loop
    // peak: it could only fall behind and spend the run draining a queue.
    const skipped: string[] = [];
    const pacedPhase = async (phase: string, kind: 'cold' | 'warm', rate: number, body: (t: Target) => string) => {
      for (const t of targets) {
        const peak = results[kind]?.[t]?.rps ?? 0;
        if (t !== 'scopegate' && rate > peak) {
          skipped.push(`${phase} / ${t}: skipped, the rate is above its ${kind} peak (${Math.round(peak)} req/s)`);
          continue;
        }
        const before = pool.reuseCount(t);
        record(phase, t, await paced(t, () => body(t), rate));
        const reused = pool.reuseCount(t) - before;
        if (kind === 'cold' && reused > 0) problems.push(`${phase} / ${t}: ${reused} requests reused a token (pool too small)`);
      }
    };
    await pacedPhase(coldHalf, 'cold', halfCold, coldBody);
    await pacedPhase(warmHalf, 'warm', halfWarm, warmBody);

    const row = (phase: string, label: string): Row => ({
      phase: label,
      scopegate: results[phase]!.scopegate!,
      opa: results[phase]?.opa,
    });
    const rows = [
      row('cold', 'cold, peak (closed loop)'),
      row('warm', 'warm, peak (closed loop)'),
      row(coldHalf, `cold, ${halfCold} req/s = ½ scopegate cold peak (open loop)`),
      row(warmHalf, `warm, ${halfWarm} req/s = ½ scopegate warm peak (open loop)`),
    ];
    const coldRatio = ratio(rows[0]!.scopegate.rps, rows[0]!.opa?.rps ?? Number.NaN);
    const warmRatio = ratio(rows[1]!.scopegate.rps, rows[1]!.opa?.rps ?? Number.NaN);
    const checks: TargetCheck[] = [
      { name: 'cold throughput vs OPA', measured: times(coldRatio), target: '≥ 1×', met: coldRatio >= 1 },
      { name: 'warm throughput vs OPA', measured: times(warmRatio), target: '≥ 3×', met: warmRatio >= 3 },
      {
        name: 'p99 at ½ peak, cold inputs',
        measured: `${rows[2]!.scopegate.p99Ms.toFixed(2)} ms`,
        target: '< 2 ms',
        met: rows[2]!.scopegate.p99Ms < 2,
      },
      {
        name: 'p99 at ½ peak, warm inputs',
        measured: `${rows[3]!.scopegate.p99Ms.toFixed(2)} ms`,
        target: '< 2 ms',
        met: rows[3]!.scopegate.p99Ms < 2,
      },
    ];

    console.log(`\nmeasured phases ended at +${sinceSpawn()} s after the PDP started`);
    console.log(`\nresults (load average now ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);
    console.log(resultsTable(rows));
    console.log('\ntargets (issue 2)\n');
    console.log(targetsTable(checks));
    for (const n of skipped) console.log(`\nnote: ${n}`);
    if (problems.length > 0) {
      console.log('\nproblems — these figures are not reliable:');
      for (const p of problems) console.log(`  - ${p}`);
      process.exitCode = 1;
    }
  } finally {
    await minter?.close();
    if (servers !== undefined) await servers.opa.stop();
    await scopegate?.stop();
    await rm(workDir, { recursive: true, force: true });
    if (profileDir !== undefined) console.log(`\nCPU profile of the PDP process written to ${profileDir}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
