/**
 * One load phase against one server, driven by autocannon's programmatic API.
 *
 * autocannon's own latency histogram has 1 ms resolution, too coarse for sub-millisecond
 * decisions, so every 2xx response time (a float in ms, measured by autocannon from write
 * to last byte) is also recorded here and the percentiles are computed from the raw values.
 * Every answer is also checked to be an allow: a fast error-deny must not pass as throughput.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

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
  overallRate?: number;
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
  /** Requests per second across all connections; omitted = as fast as the server answers. */
  rate?: number | undefined;
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
}

export async function runLoad(spec: LoadSpec): Promise<PhaseResult> {
  const samples = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let ok = 0;
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
    ...(spec.rate !== undefined ? { overallRate: spec.rate } : {}),
  };
  const result = await new Promise<AutocannonResult>((resolve, reject) => {
    const instance = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status < 200 || status >= 300) return;
      ok++;
      if (n < MAX_SAMPLES) samples[n++] = ms;
    });
  });
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
  };
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}
