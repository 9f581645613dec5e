/**
 * Where the PDP's time goes: reads a V8 .cpuprofile (from `npm run bench:pdp -- --profile <dir>`)
 * and prints self time by area (our source files, each npm package, node internals, WASM
 * modules, GC) and the functions with the most self and inclusive time, ignoring idle time.
 * `--from`/`--to` keep only samples in that window, in seconds since the profile started
 * (the bench prints when its measured phases start and end), so start-up does not count.
 *
 *   npx tsx bench/pdp-vs-opa/profile-summary.ts <file.cpuprofile> [--from 20 --to 80] [--top 25]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../../pdp-server/src/config.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the system a frame belongs to. */
function area(f: CallFrame): string {
  if (f.functionName.startsWith('(')) return f.functionName; // (garbage collector), (program), (idle)
  const url = f.url;
  if (url === '') return '(native / builtin)';
  // Each WASM module has its own url: the compiled policy and PGlite's Postgres are different modules.
  if (url.startsWith('wasm://')) return `wasm ${url.slice(7)}`;
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.relative(REPO_ROOT, file);
}

const frameKey = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${area(f)}:${f.lineNumber + 1}`;

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, from: { type: 'string' }, to: { type: 'string' } },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: profile-summary.ts <file.cpuprofile> [--top N]');
  const top = Number(values.top) || 25;
  const prof = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const fromUs = values.from !== undefined ? Number(values.from) * 1e6 : -Infinity;
  const toUs = values.to !== undefined ? Number(values.to) * 1e6 : Infinity;

  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }

  const selfByArea = new Map<string, number>();
  const selfByFrame = new Map<string, number>();
  const inclByFrame = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let at = 0; // µs since the profile started
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    at += dt;
    if (at < fromUs || at > toUs) return;
    const node = byId.get(id);
    if (!node) return;
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      return;
    }
    busy += dt;
    add(selfByArea, area(node.callFrame), dt);
    add(selfByFrame, frameKey(node.callFrame), dt);
    // Inclusive: every distinct frame on this sample's stack (recursion counted once).
    const seen = new Set<string>();
    for (let cur: number | undefined = id, depth = 0; cur !== undefined && depth < 512; cur = parent.get(cur), depth++) {
      const n = byId.get(cur);
      if (!n) break;
      const k = frameKey(n.callFrame);
      if (!seen.has(k)) {
        seen.add(k);
        add(inclByFrame, k, dt);
      }
    }
  });

  const pct = (v: number) => `${((100 * v) / busy).toFixed(1).padStart(5)}%`;
  const print = (title: string, m: Map<string, number>, n: number) => {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`  ${pct(v)}  ${k}`);
  };
  console.log(`${file}: ${(busy / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle (percentages are of busy time)`);
  print('self time by area', selfByArea, top);
  print('self time by function', selfByFrame, top);
  print('inclusive time by function', inclByFrame, top);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
