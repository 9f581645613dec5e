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

/** Run `vegeta <args>` (on the given CPUs) to its end; its stdout. */
function run(args: string[], cpuList: string | undefined): Promise<string> {
  const bin = vegeta();
  return new Promise((resolve, reject) => {
    const [command, argv] = cpuList ? ['taskset', ['-c', cpuList, bin, ...args]] : [bin, args];
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    // 'close', not 'exit': 'exit' may come before the last of stdout has been read (that once
    // cut a report short with "Unexpected end of JSON input").
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`vegeta ${args[0]} exited with ${code}`))));
  });
}

export async function runVegeta(spec: PacedSpec): Promise<PhaseResult> {
  vegeta(); // installed before the clock starts
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
    const resultsFile = path.join(dir, 'results.bin');
    const attack = [
      'attack', '-format=json', `-targets=${targetFile}`, `-rate=${spec.rate}/s`, `-duration=${spec.durationS}s`,
      `-workers=${spec.connections}`, '-max-workers=256', '-keepalive=true', `-timeout=${spec.graceS + spec.durationS}s`,
      // Answers were checked above; the results keep no bodies (each one is still read whole).
      '-max-body=0', `-output=${resultsFile}`,
    ];
    // The attack writes its results to a file and is reported on once it has ended: a report
    // decoding the stream during the attack would take CPU from the generator itself, and so
    // add its own delays to the latencies measured.
    await run(attack, spec.cpuList);
    const report = JSON.parse(await run(['report', '-type=json', resultsFile], spec.cpuList)) as VegetaReport;
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
