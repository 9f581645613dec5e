/**
 * The PDP's young-GC (scavenge) pauses under a paced load, with the decision log on and off:
 * each PDP runs with V8's `--trace-gc-nvp`, is driven by vegeta at a fixed rate, and the
 * scavenges that happened during the load are summarised. A scavenge stops the event loop,
 * so at a few thousand decisions per second their length and number are much of the p99.
 *
 *   npx tsx bench/decision-log/gc-pauses.ts [--rate 1500] [--seconds 8] [--log on,off]
 *
 * Besides the pause, it prints the part V8 spent on weak handles (the callbacks of dead
 * objects that native code holds weakly, such as crypto Hash objects) and the bytes
 * allocated per decision.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createThrowawayDatabase } from '../../test/cluster/test-services.js';
import { runVegeta } from '../pdp-vs-opa/vegeta.js';
import { startScopegate } from '../pdp-vs-opa/servers.js';
import { BENCH_SCOPES, decideBody } from '../pdp-vs-opa/workload.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1500' },
    seconds: { type: 'string', default: '8' },
    log: { type: 'string', default: 'on,off' },
  },
});
const RATE = Math.max(1, Number(values.rate));
const SECONDS = Math.max(1, Number(values.seconds));

/** The numeric fields of one `--trace-gc-nvp` line (`key=value` pairs), with the kind as `gc`. */
function parseNvp(line: string): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const m of line.matchAll(/(\S+)=(\S+)/g)) out[m[1]!] = Number.isNaN(Number(m[2])) ? m[2]! : Number(m[2]);
  return out;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);

async function measure(logOn: boolean): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-gc-'));
  const db = await createThrowawayDatabase();
  let recording = false;
  const scavenges: Array<Record<string, number | string>> = [];
  const server = await startScopegate({
    dataDir: dir,
    nodeArgs: ['--trace-gc-nvp'],
    onStdoutLine: (line) => {
      if (!recording || !line.includes('gc=s ')) return;
      scavenges.push(parseNvp(line));
    },
    env: { DATABASE_URL: db.url, SCOPEGATE_DECISION_LOG: String(logOn), SCOPEGATE_CACHE: 'memory', SCOPEGATE_SPOOL_MEMORY_DIR: 'auto' },
  });
  try {
    const res = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${server.adminKey}` },
      body: JSON.stringify({ sub: 'bench', scopes: BENCH_SCOPES, ttl_s: 3600 }),
    });
    const { token } = (await res.json()) as { token: string };
    let i = 0;
    const spec = {
      url: server.url,
      path: '/v1/decide',
      headers: { authorization: `Bearer ${server.shimKey}` },
      body: () => {
        const b = decideBody(token, 'public.orders');
        b.context = { ...b.context, session_id: `bench-${i++ % 1000}` };
        return JSON.stringify(b);
      },
      connections: 16,
      rate: RATE,
      graceS: 3,
      verify: (body: string) => body.includes('"effect":"allow"'),
    };
    await runVegeta({ ...spec, durationS: 2 }); // warm-up, not recorded
    recording = true;
    const r = await runVegeta({ ...spec, durationS: SECONDS });
    recording = false;
    const num = (k: string) => scavenges.map((s) => Number(s[k] ?? 0));
    const allocated = num('allocated').reduce((a, b) => a + b, 0);
    console.log(
      `log ${logOn ? 'on ' : 'off'} @ ${RATE}/s: ${scavenges.length} scavenges in ${SECONDS} s; pause mean ${mean(num('pause')).toFixed(2)} ms, max ${Math.max(...num('pause')).toFixed(2)} ms; ` +
        `weak handles ${mean(num('heap.external_weak_global_handles')).toFixed(2)} ms of it; ` +
        `${(allocated / Math.max(1, r.count) / 1024).toFixed(1)} KB allocated per decision; p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`,
    );
  } finally {
    await server.stop();
    await db.drop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

for (const side of values.log.split(',')) await measure(side.trim() === 'on');
