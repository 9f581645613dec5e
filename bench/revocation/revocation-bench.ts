/**
 * Benchmark: how fast a revocation reaches every replica, and what the Redis cache costs
 * against the in-process one.
 *
 *   node --import tsx bench/revocation/revocation-bench.ts [--revocations 1000] [--seconds 5]
 *
 * 1. Propagation: 3 PDP replicas share the machine's Redis (unique cluster name) and a
 *    throwaway Postgres database. Replicas 1 and 2 are kept under decide load (autocannon)
 *    while N tokens are revoked one after another on replica 0. For each, the clock starts
 *    before the revoke request is sent and stops when the last replica answers
 *    `token_revoked` for that token (each replica is asked in a tight loop, so the figure
 *    includes one decide round trip of resolution). Every token was decided (and cached)
 *    as allow on every replica beforehand.
 * 2. Warm-cache throughput: one replica with SCOPEGATE_CACHE=redis and one with memory, the
 *    same already-cached decide request, autocannon for --seconds each.
 *
 * Prints a table; the figures recorded in docs/benchmarks.md came from this script.
 */
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createRedisClusterBus } from '../../pdp-server/src/cluster/cluster-bus.js';
import { KEYS, PdpReplica, WEB_SEARCH_SCOPE, startReplicas, toolCall } from '../../test/cluster/pdp-replicas.js';
import {
  SHARED_REDIS_URL,
  createThrowawayDatabase,
  deleteRedisPrefix,
  requireSharedRedis,
  silentLog,
  uniqueName,
} from '../../test/cluster/test-services.js';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  non2xx: number;
}
interface AutocannonInstance extends Promise<AutocannonResult> {
  stop(): void;
}
type Autocannon = (opts: {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  duration: number;
}) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values } = parseArgs({
  options: { revocations: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '5' } },
});
const N = Math.max(1, Math.min(100_000, Number(values.revocations)));
const SECONDS = Math.max(1, Math.min(600, Number(values.seconds)));

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const ms = (v: number) => `${v.toFixed(1)} ms`;

function decideLoad(r: PdpReplica, token: string, connections: number, duration: number) {
  return autocannon({
    url: `${r.url}/v1/decide`,
    method: 'POST',
    headers: { authorization: `Bearer ${KEYS.shim}`, 'content-type': 'application/json' },
    body: JSON.stringify(toolCall(token)),
    connections,
    duration,
  });
}

async function untilRevoked(r: PdpReplica, token: string, deadline: number): Promise<number> {
  for (;;) {
    const d = await r.decideToolCall(token);
    if (d.code === 'token_revoked') return performance.now();
    if (performance.now() > deadline) throw new Error(`${r.name} never denied a revoked token`);
  }
}

/** The bus alone: publish on one connection pair, receive on another, in this process. */
async function busRoundTrip(cluster: string, n: number): Promise<number[]> {
  const mk = (id: string) => createRedisClusterBus({ redisUrl: SHARED_REDIS_URL, cluster, instanceId: id, log: silentLog });
  const [tx, rx] = [mk('bench-tx'), mk('bench-rx')];
  try {
    for (let i = 0; i < 500 && !(tx.connected && rx.connected); i++) await new Promise((r) => setTimeout(r, 10));
    const out: number[] = [];
    let arrived: (() => void) | undefined;
    rx.on('revocation', (d) => {
      out.push(performance.now() - (d as { t: number }).t);
      arrived?.();
    });
    for (let i = 0; i < n; i++) {
      const got = new Promise<void>((r) => (arrived = r));
      await tx.publish('revocation', { t: performance.now() });
      await got;
    }
    return out.sort((x, y) => x - y);
  } finally {
    await tx.close();
    await rx.close();
  }
}

async function main() {
  await requireSharedRedis();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-bench-rev-'));
  const db = await createThrowawayDatabase();
  const cluster = uniqueName('sgbench');
  const started: PdpReplica[] = [];
  const base = { dataDir: path.join(dir, 'data'), databaseUrl: db.url, redisUrl: SHARED_REDIS_URL, cluster };
  try {
    // Each replica logs 'revocation applied' when a bus message lands (read below).
    const replicas = await startReplicas(3, { ...base, cache: 'redis' });
    started.push(...replicas);
    const [a, b, c] = replicas as [PdpReplica, PdpReplica, PdpReplica];
    console.log(`3 replicas up; minting and warming ${N} tokens…`);

    const tokens: Array<{ token: string; jti: string }> = [];
    for (let i = 0; i < N; i++) tokens.push(await a.mint(`bench-${i % 50}`, [WEB_SEARCH_SCOPE]));
    for (const t of tokens) for (const r of replicas) await r.decideToolCall(t.token);
    const loadToken = (await a.mint('bench-load', [WEB_SEARCH_SCOPE])).token;

    // Load on the two receiving replicas for the whole revocation phase.
    const loads = [decideLoad(b, loadToken, 4, 3600), decideLoad(c, loadToken, 4, 3600)];
    const samples: number[] = [];
    const created = new Map<string, number>(); // revocation id → created_at (store clock = this machine's)
    const t0All = performance.now();
    for (const t of tokens) {
      const t0 = performance.now();
      const deadline = t0 + 10_000;
      const [rev, ...denied] = await Promise.all([
        a.request('POST', `/v1/tokens/${t.jti}/revoke`, KEYS.admin),
        untilRevoked(a, t.token, deadline),
        untilRevoked(b, t.token, deadline),
        untilRevoked(c, t.token, deadline),
      ]);
      if (rev.status !== 201) throw new Error(`revoke failed: ${rev.status}`);
      const body = rev.body as { id: string; created_at: string };
      created.set(body.id, Date.parse(body.created_at));
      samples.push(Math.max(...denied) - t0);
    }
    const elapsed = (performance.now() - t0All) / 1000;
    for (const l of loads) l.stop();
    const loadResults = await Promise.all(loads);
    samples.sort((x, y) => x - y);

    console.log('\n## Revocation propagation (3 replicas, shared Redis + Postgres)');
    console.log(`revocations: ${N} in ${elapsed.toFixed(1)} s, receivers under load (${loadResults.map((r) => `${Math.round(r.requests.average)} req/s`).join(', ')})`);
    console.log(`p50 ${ms(pct(samples, 50))}  p99 ${ms(pct(samples, 99))}  max ${ms(samples.at(-1)!)}  (target p99 ≤ 50 ms)`);
    // The same revocations, timed inside the replicas: store commit → applied in memory on
    // the last receiving replica (pino's ms timestamps; no decide round trip in the figure).
    const applied = new Map<string, number[]>();
    for (const r of [b, c]) {
      for (const l of r.logs) {
        if (l.msg !== 'revocation applied' || typeof l.id !== 'string' || typeof l.time !== 'number') continue;
        applied.set(l.id, [...(applied.get(l.id) ?? []), l.time]);
      }
    }
    const applySamples = [...created]
      .flatMap(([id, t]) => {
        const times = applied.get(id) ?? [];
        return times.length === 2 ? [Math.max(...times) - t] : [];
      })
      .sort((x, y) => x - y);
    if (applySamples.length > 0) {
      console.log(
        `in-replica (commit → applied on both receivers, ${applySamples.length}/${N} seen over the bus): ` +
          `p50 ${ms(pct(applySamples, 50))}  p99 ${ms(pct(applySamples, 99))}  max ${ms(applySamples.at(-1)!)}`,
      );
    }
    const bus = await busRoundTrip(`${cluster}-bus`, 500);
    console.log(`bus alone (publish → delivered, same process, 500 messages): p50 ${ms(pct(bus, 50))}  p99 ${ms(pct(bus, 99))}  max ${ms(bus.at(-1)!)}`);
    const loadErrors = loadResults.reduce((s, r) => s + r.errors + r.non2xx, 0);
    if (loadErrors > 0) console.log(`load errors/non-2xx during the run: ${loadErrors}`);

    // Warm-cache throughput: replica 0 (redis cache) against a fresh one with the memory cache.
    const mem = await PdpReplica.start({ ...base, name: 'replica-memory', cache: 'memory' });
    started.push(mem);
    const warm = (await a.mint('bench-warm', [WEB_SEARCH_SCOPE])).token;
    console.log('\n## Warm-cache decide throughput (one replica, 8 connections, ' + SECONDS + ' s each)');
    console.log('| cache | req/s | p50 | p99 |');
    console.log('| --- | --- | --- | --- |');
    for (const [name, r] of [
      ['redis', a],
      ['memory', mem],
    ] as const) {
      await r.decideToolCall(warm);
      const res = await decideLoad(r, warm, 8, SECONDS);
      console.log(`| ${name} | ${Math.round(res.requests.average)} | ${res.latency.p50} ms | ${res.latency.p99} ms |`);
    }
  } finally {
    await Promise.all(started.map((r) => r.stop()));
    await db.drop();
    await deleteRedisPrefix(SHARED_REDIS_URL, `${cluster}:`);
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
