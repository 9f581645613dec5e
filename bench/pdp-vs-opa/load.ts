/**
 * Load phases against one server.
 *
 * Peak phases are closed-loop, driven by autocannon's programmatic API: N connections, each
 * sends its next request as soon as the previous answer arrives. autocannon's own latency
 * histogram has 1 ms resolution, too coarse for sub-millisecond decisions, so every 2xx
 * response time (a float in ms, measured by autocannon from write to last byte) is also
 * recorded here and the percentiles are computed from the raw values.
 *
 * Fixed-rate phases are open-loop (runPaced): autocannon's `overallRate` gives each
 * connection a per-second quota that it spends as fast as it can at the start of every
 * second, so "half of peak" would really be bursts at full peak followed by idle time.
 * runPaced instead starts requests on an even schedule and measures each latency from the
 * moment the request was due, not from when it was sent, so a stalled server (or a stalled
 * load generator) shows up in the percentiles instead of silently lowering the rate.
 *
 * Every answer is checked to be an allow: a fast error-deny must not pass as throughput.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

/** The part of autocannon's API used here (the package ships no types). */
interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
  duration: number;
}
interface AutocannonRequest {
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  setupRequest: (req: AutocannonRequest) => AutocannonRequest & { body: string };
}
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: number;
  requests: AutocannonRequest[];
  verifyBody: (body: string) => boolean;
}
type Autocannon = (
  opts: AutocannonOptions,
  cb: (err: Error | null, result: AutocannonResult) => void,
) => EventEmitter & { stop(): void };

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** Most latency samples kept per phase (bounds memory; ~100 k/s for 10 s fits easily). */
const MAX_SAMPLES = 2_000_000;

export interface LoadSpec {
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Called once per request: the next request body. */
  body: () => string;
  connections: number;
  durationS: number;
  /** True when the response body is the expected answer. */
  verify: (body: string) => boolean;
}

export interface PhaseResult {
  /** 2xx answers per second over the phase. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  count: number;
  errors: number;
  non2xx: number;
  mismatches: number;
  durationS: number;
  /** Requests still unanswered when a fixed-rate phase was cut off (the server fell behind). */
  unanswered: number;
  /** p99 of this process's event-loop delay: how late the load generator itself ran. */
  generatorLagP99Ms: number;
  /** Server CPU time (user + system, all threads) per answer, in µs; set by the caller. */
  cpuUsPerDecision?: number | undefined;
  /** Share of the phase during which some task on the machine waited for a CPU; set by the caller. */
  cpuStallShare?: number | undefined;
}

/** Event-loop delay of the load generator, sampled every millisecond while a phase runs. */
function lagMonitor(): () => number {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  return () => {
    h.disable();
    return h.percentile(99) / 1e6;
  };
}

export async function runLoad(spec: LoadSpec): Promise<PhaseResult> {
  const samples = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let ok = 0;
  const lag = lagMonitor();
  const opts: AutocannonOptions = {
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationS,
    pipelining: 1,
    requests: [
      {
        method: 'POST',
        path: spec.path,
        headers: { 'content-type': 'application/json', ...spec.headers },
        setupRequest: (req) => ({ ...req, body: spec.body() }),
      },
    ],
    verifyBody: spec.verify,
  };
  const result = await new Promise<AutocannonResult>((resolve, reject) => {
    const instance = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status < 200 || status >= 300) return;
      ok++;
      if (n < MAX_SAMPLES) samples[n++] = ms;
    });
  });
  const generatorLagP99Ms = lag();
  const sorted = samples.subarray(0, n).sort();
  return {
    rps: ok / result.duration,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    count: ok,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    mismatches: result.mismatches,
    durationS: result.duration,
    unanswered: 0,
    generatorLagP99Ms,
  };
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

export interface PacedSpec extends LoadSpec {
  /** Requests per second, started on an even schedule. */
  rate: number;
  /** After the last request is due, how long answers are still awaited before the phase is cut off. */
  graceS: number;
  /** Run the generator on these CPUs (a `taskset` list); vegeta only: the in-process generator runs where this process does. */
  cpuList?: string | undefined;
}

export async function runPaced(spec: PacedSpec): Promise<PhaseResult> {
  const total = Math.max(1, Math.round(spec.rate * spec.durationS));
  const samples = new Float64Array(Math.min(total, MAX_SAMPLES));
  const pool = new Pool(spec.url, { connections: spec.connections, pipelining: 1 });
  const headers = { 'content-type': 'application/json', ...spec.headers };
  const gapMs = 1000 / spec.rate;
  let n = 0;
  let errors = 0;
  let non2xx = 0;
  let mismatches = 0;
  let cutOff = false;
  const inflight = new Set<Promise<void>>();
  const lag = lagMonitor();

  const fire = (dueAt: number) => {
    const p = pool
      .request({ method: 'POST', path: spec.path, headers, body: spec.body() })
      .then(async (res) => {
        const text = await res.body.text();
        const ms = performance.now() - dueAt;
        if (res.statusCode < 200 || res.statusCode >= 300) non2xx++;
        else {
          if (!spec.verify(text)) mismatches++;
          if (n < samples.length) samples[n++] = ms;
        }
      })
      .catch(() => {
        if (!cutOff) errors++;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };

  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    // Start every request that is due by now; timers fire ~1 ms apart, so a few may be due at once.
    const due = Math.min(total, Math.floor((performance.now() - start) / gapMs) + 1);
    for (; sent < due; sent++) fire(start + sent * gapMs);
    const wait = start + sent * gapMs - performance.now();
    if (wait > 0) await sleep(wait);
  }
  // A server that cannot keep up would leave a queue that takes far longer than the phase
  // to drain: wait a bounded grace time, then cut the rest off and report it as unanswered.
  const stopGrace = new AbortController();
  const grace = sleep(spec.graceS * 1000, undefined, { signal: stopGrace.signal }).then(
    () => 'cut' as const,
    () => 'done' as const,
  );
  const drained = Promise.all(inflight).then(() => 'done' as const);
  const outcome = await Promise.race([drained, grace]);
  stopGrace.abort();
  const unanswered = outcome === 'cut' ? inflight.size : 0;
  const durationS = (performance.now() - start) / 1000;
  cutOff = true;
  await pool.destroy();
  const generatorLagP99Ms = lag();
  const sorted = samples.subarray(0, n).sort();
  return {
    rps: n / durationS,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    count: n,
    errors,
    non2xx,
    mismatches,
    durationS,
    unanswered,
    generatorLagP99Ms,
  };
}
