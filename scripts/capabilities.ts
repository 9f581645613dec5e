/**
 * Regenerates policies/capabilities.json: the builtins a scopegate policy may call.
 *
 *   tsx scripts/capabilities.ts          # rewrite policies/capabilities.json
 *   tsx scripts/capabilities.ts --check  # exit 1 if the committed file is stale
 *
 * A compiled policy runs in the WASM module opa emits, hosted by @open-policy-agent/opa-wasm.
 * A builtin works there only if the WASM compiler implements it natively or the JS host
 * implements it. Rather than trusting a hand-kept list, this script asks both sides:
 *   1. `opa capabilities --current` lists every builtin of the pinned opa;
 *   2. a probe policy calling each of them is compiled with `opa build -t wasm`; the
 *      module's `builtins()` export lists those it would delegate to the host, so every
 *      other probed builtin is native;
 *   3. the host's JS builtin table (opa-wasm's src/builtins) says which delegated ones exist.
 * Builtins that cannot even be called in Rego v1 (deprecated, variadic, operators with
 * special compilation) drop out at step 2.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { REPO_ROOT } from '../pdp-server/src/config.js';
import { CAPABILITIES_FILE, findOpa, opaErrorText, readBundleFiles, runOpa } from '../pdp-server/src/policy/opa-cli.js';

/**
 * Operators the planner compiles itself (unification and assignment): they are never
 * called as functions, so the probe cannot see them, yet the compiler needs their
 * declarations for `=` and `:=` to type-check.
 */
const LANGUAGE_BUILTINS: readonly string[] = ['eq', 'assign'];

/** Builtins the PDP itself would pass to loadPolicy as customBuiltins (none today). */
const EXTRA_HOST_BUILTINS: readonly string[] = [];

interface BuiltinDecl {
  name: string;
  decl?: { args?: unknown[]; variadic?: unknown; result?: unknown };
  infix?: string;
  relation?: boolean;
  [k: string]: unknown;
}
interface Capabilities {
  builtins: BuiltinDecl[];
  [k: string]: unknown;
}

function hostBuiltinNames(): Set<string> {
  // The package's "exports" hide src/builtins; an absolute path reaches it all the same.
  const require = createRequire(import.meta.url);
  const file = path.join(REPO_ROOT, 'node_modules', '@open-policy-agent', 'opa-wasm', 'src', 'builtins', 'index.js');
  const table = require(file) as Record<string, unknown>;
  return new Set([...Object.keys(table), ...EXTRA_HOST_BUILTINS]);
}

function probeRule(i: number, b: BuiltinDecl): string {
  const n = b.decl?.args?.length ?? 0;
  const args = Array.from({ length: n }, (_, j) => `input.a${j}`).join(', ');
  return `p${i} := ${b.name}(${args})\n`;
}

/** Compiles probes; returns the builtins the wasm module delegates to its host. */
async function probe(opa: string, dir: string, candidates: BuiltinDecl[]): Promise<{ ok: BuiltinDecl[]; host: Set<string> }> {
  let current = candidates;
  // Each round drops the builtins whose probe lines fail to compile; bounded by a few rounds.
  for (let round = 0; round < 8; round++) {
    const src = `package probe\n\n${current.map((b, i) => probeRule(i, b)).join('')}`;
    const file = path.join(dir, 'probe.rego');
    const out = path.join(dir, 'probe.tar.gz');
    await writeFile(file, src);
    try {
      await runOpa(opa, ['build', '-t', 'wasm', '-e', 'probe', '-o', out, file]);
    } catch (err) {
      const stderr = opaErrorText(err);
      const bad = new Set<number>();
      for (const m of stderr.matchAll(/probe\.rego:(\d+):/g)) bad.add(Number(m[1]) - 3); // rules start on line 3
      if (bad.size === 0) throw err;
      current = current.filter((_, i) => !bad.has(i));
      continue;
    }
    const files = await readBundleFiles(await readFile(out));
    const wasm = files.get('/policy.wasm');
    if (!wasm) throw new Error('probe bundle has no policy.wasm');
    const policy = await loadPolicy(wasm);
    const exports = (policy.wasmInstance as unknown as { exports: Record<string, unknown> }).exports;
    const builtinsAddr = (exports['builtins'] as () => number)();
    const strAddr = (exports['opa_json_dump'] as (a: number) => number)(builtinsAddr);
    const mem = new Uint8Array(policy.mem.buffer);
    let end = strAddr;
    while (mem[end] !== 0) end++;
    const delegated = JSON.parse(new TextDecoder().decode(mem.subarray(strAddr, end))) as Record<string, number>;
    return { ok: current, host: new Set(Object.keys(delegated)) };
  }
  throw new Error('probe did not converge');
}

async function main(): Promise<void> {
  const check = process.argv.includes('--check');
  const opa = await findOpa(process.env['SCOPEGATE_OPA_BIN']);
  const current = JSON.parse((await runOpa(opa, ['capabilities', '--current'])).stdout) as Capabilities;
  const callable = current.builtins.filter((b) => b.decl?.variadic === undefined);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-caps-'));
  try {
    const { ok, host } = await probe(opa, dir, callable);
    const jsHost = hostBuiltinNames();
    const allowed = new Set(ok.filter((b) => !host.has(b.name) || jsHost.has(b.name)).map((b) => b.name));
    for (const name of LANGUAGE_BUILTINS) allowed.add(name);
    const builtins = current.builtins.filter((b) => allowed.has(b.name)).sort((a, b) => a.name.localeCompare(b.name));
    // The ABI versions opa-wasm 1.10 speaks; `opa capabilities` omits them in builds without a wasm runtime.
    const result = {
      ...current,
      builtins,
      wasm_abi_versions: [
        { version: 1, minor_version: 1 },
        { version: 1, minor_version: 2 },
      ],
    };
    const text = `${JSON.stringify(result, null, 2)}\n`;
    if (check) {
      const existing = await readFile(CAPABILITIES_FILE, 'utf8').catch(() => '');
      if (existing !== text) {
        console.error(`${path.relative(REPO_ROOT, CAPABILITIES_FILE)} is stale: run tsx scripts/capabilities.ts`);
        process.exit(1);
      }
      console.log(`${path.relative(REPO_ROOT, CAPABILITIES_FILE)} is up to date (${builtins.length} builtins)`);
      return;
    }
    await writeFile(CAPABILITIES_FILE, text);
    const skipped = current.builtins.filter((b) => !allowed.has(b.name)).map((b) => b.name);
    const hosted = [...host].filter((h) => jsHost.has(h));
    console.log(
      `${path.relative(REPO_ROOT, CAPABILITIES_FILE)}: ${builtins.length} builtins ` +
        `(${ok.length - host.size} native, ${hosted.length} from the JS host: ${hosted.sort().join(', ')}); left out ${skipped.length}`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
