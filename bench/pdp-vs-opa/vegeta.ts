/**
 * Fixed-rate phases driven by vegeta (Go, `scripts/ensure-vegeta.sh`) instead of this Node
 * process. On a two-core machine the Node generator (runPaced) spends most of a core of its
 * own and its event loop adds about a millisecond to every latency it measures; vegeta needs
 * a fraction of that, so the latencies are the server's. It measures from when each request
 * was sent and starts more workers (up to 256) whenever all are busy, so a stalled server
 * still shows in the percentiles instead of lowering the rate.
 *
 * Bodies: the spec's body() is called 1000 times up front and vegeta cycles through them.
 * vegeta does not check answers, so one request per body shape is checked with `verify`
 * before the phase, and every non-2xx status it reports is counted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import type { PacedSpec, PhaseResult } from './load.js';

let vegetaBin: string | undefined;
function vegeta(): string {
  vegetaBin ??= execFileSync('bash', [path.join(REPO_ROOT, 'scripts/ensure-vegeta.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return vegetaBin;
}

/** The part of `vegeta report -type=json` used here (latencies in ns). */
interface VegetaReport {
  latencies: { '50th': number; '99th': number };
  requests: number;
  duration: number;
  wait: number;
  status_codes: Record<string, number>;
  errors: string[] | null;
}

export async function runVegeta(spec: PacedSpec): Promise<PhaseResult> {
  const bin = vegeta();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sg-vegeta-'));
  try {
    const bodies = Array.from({ length: 1000 }, () => spec.body());
    const headers: Record<string, string[]> = { 'content-type': ['application/json'] };
    for (const [k, v] of Object.entries(spec.headers)) headers[k] = [v];
    const check = await fetch(new URL(spec.path, spec.url), { method: 'POST', headers: { 'content-type': 'application/json', ...spec.headers }, body: bodies[0]! });
    const mismatch = !check.ok || !spec.verify(await check.text());
    const targets = bodies.map((b) => JSON.stringify({ method: 'POST', url: new URL(spec.path, spec.url).toString(), header: headers, body: Buffer.from(b).toString('base64') }));
    const targetFile = path.join(dir, 'targets.json');
    await writeFile(targetFile, targets.join('\n') + '\n');
    const attack = [
      'attack', '-format=json', `-targets=${targetFile}`, `-rate=${spec.rate}/s`, `-duration=${spec.durationS}s`,
      `-workers=${spec.connections}`, '-max-workers=256', '-keepalive=true', `-timeout=${spec.graceS + spec.durationS}s`,
    ];
    const report = await new Promise<VegetaReport>((resolve, reject) => {
      // attack | report, both vegeta; the results stream never touches this process.
      const pinned = (args: string[]): [string, string[]] => (spec.cpuList ? ['taskset', ['-c', spec.cpuList, bin, ...args]] : [bin, args]);
      const a = spawn(...pinned(attack), { stdio: ['ignore', 'pipe', 'inherit'] });
      const r = spawn(...pinned(['report', '-type=json']), { stdio: ['pipe', 'pipe', 'inherit'] });
      a.stdout.pipe(r.stdin);
      let out = '';
      r.stdout.on('data', (d: Buffer) => (out += d.toString()));
      r.on('error', reject);
      a.on('error', reject);
      let attackExit: number | null | undefined;
      a.on('exit', (code) => (attackExit = code));
      // 'close', not 'exit': 'exit' may come before the last of the report's stdout has been read
      // (that cut a run short with "Unexpected end of JSON input").
      r.on('close', (code) => {
        try {
          if (code !== 0) throw new Error(`vegeta report exited with ${code}`);
          if (attackExit !== undefined && attackExit !== 0) throw new Error(`vegeta attack exited with ${attackExit}`);
          resolve(JSON.parse(out) as VegetaReport);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    const ok = Object.entries(report.status_codes).reduce((n, [code, c]) => (code.startsWith('2') ? n + c : n), 0);
    const failed = report.status_codes['0'] ?? 0;
    const durationS = (report.duration + report.wait) / 1e9;
    return {
      rps: ok / durationS,
      p50Ms: report.latencies['50th'] / 1e6,
      p99Ms: report.latencies['99th'] / 1e6,
      count: ok,
      errors: failed,
      non2xx: report.requests - ok - failed,
      mismatches: mismatch ? 1 : 0,
      durationS,
      unanswered: 0,
      generatorLagP99Ms: Number.NaN,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
