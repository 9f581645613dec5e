/**
 * The two servers under test, each started as its own process on a loopback port:
 *
 * - scopegate: `node --import tsx pdp-server/src/server.ts` (what `npx tsx` runs, minus the
 *   npm wrapper process, so there is one pid to stop and `--cpu-prof` reaches the PDP itself);
 * - OPA: `opa run --server` with the same policies/ Rego and data.json, plus a wrapper
 *   module (opa-wrapper.rego) that verifies the scoped JWT in Rego before evaluating the
 *   same entrypoint — the work the PDP does per decision.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUNDLED_POLICY_DIR, REPO_ROOT } from '../../pdp-server/src/config.js';

export const BENCH_DIR = path.join(REPO_ROOT, 'bench', 'pdp-vs-opa');

export interface RunningServer {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export interface RunningScopegate extends RunningServer {
  adminKey: string;
  shimKey: string;
}

/** A free loopback port (the OS picks it; the tiny race with another process is acceptable here). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

/** The parent's environment without anything that would change what the PDP connects to. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('SCOPEGATE_') || k === 'REDIS_URL' || k === 'DATABASE_URL' || k.startsWith('NODE_OPTIONS')) continue;
    env[k] = v;
  }
  return env;
}

/** Keeps the last lines a child printed, for the error message when it fails to start. */
function tail(child: ChildProcess): () => string {
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(l);
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => lines.join('\n');
}

async function waitReady(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited before it was ready (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new Error(`server not ready at ${url} within ${timeoutMs} ms:\n${output()}`);
}

/**
 * Start a server under test the way a deployed service runs: in a session of its own.
 *
 * Linux's autogroup scheduling (kernel.sched_autogroup_enabled=1, its default, in effect
 * wherever no cgroups of a service manager already separate services, as on this machine)
 * shares the CPU fairly between sessions first and between processes only within one. A
 * server left in the benchmark's session would share one slice with the load generator,
 * while Postgres and a daemonised pgbouncer (`-d`) each get a slice of their own; with
 * `detached` every server under test is on the same footing. A benchmark that dies takes
 * its servers (their whole process groups) with it.
 */
export function spawnService(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, { ...options, detached: true });
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', killGroup);
  child.once('exit', () => process.off('exit', killGroup));
  return child;
}

/** SIGTERM a child (SIGKILL after 15 s) and wait for it to exit; nothing if it has already. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

export interface ScopegateOptions {
  dataDir: string;
  /** Extra SCOPEGATE_* settings (cache, decision log). */
  env: Record<string, string>;
  /** Directory for a V8 CPU profile of the PDP process (written when it exits). */
  cpuProfDir?: string | undefined;
  /** Extra node/V8 flags for the PDP process (some, like --single-threaded-gc, are refused in NODE_OPTIONS). */
  nodeArgs?: readonly string[];
  /** Also hand every line the PDP prints on stdout to this (e.g. V8's --trace-gc-nvp lines). */
  onStdoutLine?: (line: string) => void;
}

export async function startScopegate(opts: ScopegateOptions): Promise<RunningScopegate> {
  const port = await freePort();
  const adminKey = randomBytes(24).toString('base64url');
  const shimKey = randomBytes(24).toString('base64url');
  const nodeArgs = [...(opts.nodeArgs ?? []), '--import', 'tsx'];
  if (opts.cpuProfDir !== undefined) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir);
  const child = spawnService(process.execPath, [...nodeArgs, path.join(REPO_ROOT, 'pdp-server', 'src', 'server.ts')], {
    cwd: REPO_ROOT,
    env: {
      ...cleanEnv(),
      NODE_ENV: 'production',
      SCOPEGATE_PORT: String(port),
      SCOPEGATE_DATA_DIR: opts.dataDir,
      SCOPEGATE_POLICY_WATCH: 'false',
      SCOPEGATE_LOG_LEVEL: 'warn',
      SCOPEGATE_ADMIN_KEY: adminKey,
      SCOPEGATE_SHIM_KEY: shimKey,
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = tail(child);
  if (opts.onStdoutLine) {
    const onLine = opts.onStdoutLine;
    let partial = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    });
  }
  const url = `http://127.0.0.1:${port}`;
  try {
    // The first start compiles policies/ with the opa CLI; allow for a slow, shared machine.
    await waitReady(`${url}/readyz`, child, output, 90_000);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return { name: 'scopegate', url, pid: child.pid ?? -1, adminKey, shimKey, stop: () => stopChild(child) };
}

/** The Rego files of the policy library (tests excluded) and its data.json, as OPA loads them. */
export async function policyFiles(dir: string = BUNDLED_POLICY_DIR): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.rego') && !n.endsWith('_test.rego')).sort();
  return [...names.map((n) => path.join(dir, n)), path.join(dir, 'data.json')];
}

export interface OpaOptions {
  opaBin: string;
  /** Scratch folder for the generated key data and config. */
  workDir: string;
  /** The PDP's public JWKS, as served at /.well-known/jwks.json. */
  jwks: unknown;
  /**
   * Entries in OPA's io.jwt verification cache (named inter-query cache `io_jwt`, off by
   * default in OPA). Set to the size of the PDP's own verified-token cache so both servers
   * may skip re-verifying a token they have already seen.
   */
  jwtCacheEntries: number;
}

export async function startOpa(opts: OpaOptions): Promise<RunningServer> {
  const port = await freePort();
  // A JSON file passed to `opa run` is merged at the root of data: this one becomes data.bench_keys.
  const keysFile = path.join(opts.workDir, 'bench-keys.json');
  await writeFile(keysFile, JSON.stringify({ bench_keys: { jwks: JSON.stringify(opts.jwks) } }));
  const configFile = path.join(opts.workDir, 'opa-config.json');
  await writeFile(
    configFile,
    JSON.stringify({
      caching: { inter_query_builtin_value_cache: { named: { io_jwt: { max_num_entries: opts.jwtCacheEntries } } } },
    }),
  );
  const args = [
    'run',
    '--server',
    '--addr',
    `127.0.0.1:${port}`,
    '--log-level',
    'error',
    '--skip-version-check',
    '--config-file',
    configFile,
    ...(await policyFiles()),
    path.join(BENCH_DIR, 'opa-wrapper.rego'),
    keysFile,
  ];
  const child = spawnService(opts.opaBin, args, { cwd: opts.workDir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const output = tail(child);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(`${url}/health`, child, output, 30_000);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return { name: 'opa', url, pid: child.pid ?? -1, stop: () => stopChild(child) };
}
