/**
 * Real PDP processes for the multi-replica tests and the benchmark: `node --import tsx
 * pdp-server/src/server.ts` with SCOPEGATE_PORT=0, found by the `listening` JSON log line.
 * Replicas of one group share a data folder (so they share the token signing key, as real
 * replicas share a key), a Postgres database and a Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import type { Decision } from '../../pdp-server/src/contract.js';

export const KEYS = {
  admin: 'test-admin-key-0123456789',
  shim: 'test-shim-key-0123456789',
  auditor: 'test-auditor-key-0123456789',
  approver: 'test-approver-key-0123456789',
} as const;

export interface ReplicaOptions {
  name: string;
  dataDir: string;
  databaseUrl: string;
  redisUrl?: string;
  cluster: string;
  cache?: 'auto' | 'memory' | 'redis' | 'off';
  env?: Record<string, string>;
}

export class PdpReplica {
  private exited = false;
  private constructor(
    readonly name: string,
    readonly url: string,
    private readonly child: ChildProcess,
    /** Every JSON log line the process printed (bounded), still filling while it runs. */
    readonly logs: Array<Record<string, unknown>>,
  ) {
    child.once('exit', () => (this.exited = true));
  }

  static async start(o: ReplicaOptions, timeoutMs = 90_000): Promise<PdpReplica> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      SCOPEGATE_HOST: '127.0.0.1',
      SCOPEGATE_PORT: '0',
      SCOPEGATE_DATA_DIR: o.dataDir,
      DATABASE_URL: o.databaseUrl,
      SCOPEGATE_CLUSTER: o.cluster,
      SCOPEGATE_INSTANCE_ID: o.name,
      SCOPEGATE_POLICY_WATCH: 'false',
      SCOPEGATE_LOG_LEVEL: 'info',
      SCOPEGATE_CACHE: o.cache ?? 'auto',
      SCOPEGATE_ADMIN_KEY: KEYS.admin,
      SCOPEGATE_SHIM_KEY: KEYS.shim,
      SCOPEGATE_AUDITOR_KEY: KEYS.auditor,
      SCOPEGATE_APPROVER_KEY: KEYS.approver,
      ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}),
      ...o.env,
    };
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'pdp-server/src/server.ts')], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: Array<Record<string, unknown>> = [];
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${o.name} did not start: ${stderr}`)), timeoutMs);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${o.name} exited with ${code}: ${stderr}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (logs.length < 200_000) logs.push(rec);
        if (rec.msg === 'listening' && typeof rec.url === 'string') {
          clearTimeout(timer);
          resolve(rec.url);
        }
      });
    }).catch(async (err: unknown) => {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      throw err;
    });
    return new PdpReplica(o.name, url, child, logs);
  }

  countLogs(msg: string): number {
    return this.logs.filter((l) => l.msg === msg).length;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }

  async request<T = unknown>(
    method: string,
    p: string,
    key: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(this.url + p, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body !== undefined ? { 'content-type': contentType } : {}),
      },
      ...(body !== undefined ? { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  async mint(sub: string, scopes: string[]): Promise<{ token: string; jti: string }> {
    const r = await this.request<{ token: string; jti: string }>('POST', '/v1/tokens', KEYS.admin, { sub, scopes, ttl_s: 600 });
    if (r.status !== 201) throw new Error(`mint failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** A web-search tool call, allowed by the default policy for scope tool:web-search:call. */
  async decideToolCall(token: string): Promise<Decision> {
    const r = await this.request<Decision>('POST', '/v1/decide', KEYS.shim, toolCall(token));
    if (r.status !== 200) throw new Error(`decide failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
}

export const WEB_SEARCH_SCOPE = 'tool:web-search:call';

export function toolCall(token: string) {
  return {
    token,
    resource: { kind: 'tool', name: 'web-search' },
    request: { tool: { name: 'web-search', arguments: { q: 'weather' } } },
    context: { chain: 'research', step: 'search' },
  };
}

/** Start replicas: the first alone (it creates the shared signing key), the rest together. */
export async function startReplicas(n: number, base: Omit<ReplicaOptions, 'name'>, prefix = 'replica'): Promise<PdpReplica[]> {
  const first = await PdpReplica.start({ ...base, name: `${prefix}-0` });
  const rest = await Promise.allSettled(
    Array.from({ length: n - 1 }, (_, i) => PdpReplica.start({ ...base, name: `${prefix}-${i + 1}` })),
  );
  const started = [first, ...rest.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))];
  const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((r) => r.stop()));
    throw failed.reason;
  }
  return started;
}
