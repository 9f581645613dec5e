/**
 * pg-proxy process configuration: a YAML/JSON file (`--config` or SCOPEGATE_PG_PROXY_CONFIG)
 * overlaid with environment variables, validated once into a frozen object. Every problem is
 * reported at once and the process refuses to start.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { MAX_WORKERS } from './worker-cluster.js';

/** Set by the primary for each worker it forks (not a setting for operators). */
export const WORKER_INDEX_ENV = 'SCOPEGATE_PG_WORKER_INDEX';

export interface PgProxyConfig {
  listen: { host: string; port: number };
  upstream: { host: string; port: number; database: string; user: string; password?: string | undefined };
  resource: string;
  pdp: { url: string; key: string; timeoutMs: number };
  tls?: { certFile: string; keyFile: string } | undefined;
  allowPlaintextNonLoopback: boolean;
  approvalWaitS: number;
  /** pino level; per-statement events (decisions) are logged at `debug`. */
  logLevel: string;
  maxMessageBytes: number;
  startupTimeoutMs: number;
  /** Processes serving connections (node:cluster); 1 = no cluster. `auto` resolves to the CPU count. */
  workers: number;
  /** In a worker of a cluster: its index (0 otherwise). */
  workerIndex: number;
  /** Entries of the statement summary cache; 0 turns it off. */
  summaryCacheSize: number;
}

type Raw = Record<string, unknown>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid pg-proxy configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

function pick(obj: Raw, path: string): unknown {
  let cur: unknown = obj;
  for (const k of path.split('.')) cur = cur && typeof cur === 'object' ? (cur as Raw)[k] : undefined;
  return cur;
}

export function loadPgProxyConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Readonly<PgProxyConfig> {
  const problems: string[] = [];
  const flag = argv.indexOf('--config');
  const file = (flag >= 0 ? argv[flag + 1] : undefined) ?? env.SCOPEGATE_PG_PROXY_CONFIG;
  let raw: Raw = {};
  if (file) {
    try {
      const text = readFileSync(file, 'utf8');
      raw = (file.endsWith('.json') ? JSON.parse(text) : parseYaml(text)) as Raw;
    } catch (err) {
      problems.push(`config file ${file}: ${(err as Error).message}`);
    }
  }
  const str = (envName: string, path: string, def?: string): string | undefined => {
    const v = env[envName] ?? pick(raw, path);
    if (v === undefined || v === null || v === '') return def;
    return String(v);
  };
  const int = (envName: string, path: string, def: number): number => {
    const v = str(envName, path);
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) problems.push(`${envName} / ${path} must be a non-negative integer`);
    return n;
  };
  const required = (envName: string, path: string): string => {
    const v = str(envName, path);
    if (v === undefined) problems.push(`${envName} / ${path} is required`);
    return v ?? '';
  };
  let password = str('SCOPEGATE_PG_UPSTREAM_PASSWORD', 'upstream.password');
  const passwordFile = str('SCOPEGATE_PG_UPSTREAM_PASSWORD_FILE', 'upstream.passwordFile');
  if (password === undefined && passwordFile) {
    try {
      password = readFileSync(passwordFile, 'utf8').trim();
    } catch {
      problems.push(`cannot read the upstream password file ${passwordFile}`);
    }
  }
  const certFile = str('SCOPEGATE_PG_TLS_CERT', 'tls.cert');
  const keyFile = str('SCOPEGATE_PG_TLS_KEY', 'tls.key');
  if ((certFile === undefined) !== (keyFile === undefined)) problems.push('tls.cert and tls.key must be set together');
  const allowPlain = str('SCOPEGATE_PG_ALLOW_PLAINTEXT_NON_LOOPBACK', 'allowPlaintextNonLoopback', 'false');
  if (allowPlain !== 'true' && allowPlain !== 'false') problems.push('allowPlaintextNonLoopback must be true or false');
  const logLevel = str('SCOPEGATE_PG_LOG_LEVEL', 'logLevel', 'info') as string;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`logLevel must be one of ${LOG_LEVELS.join(', ')}`);
  const workersRaw = str('SCOPEGATE_PG_WORKERS', 'workers', '1') as string;
  const workers = workersRaw === 'auto' ? Math.min(MAX_WORKERS, os.availableParallelism()) : Number(workersRaw);
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) problems.push(`SCOPEGATE_PG_WORKERS / workers must be "auto" or an integer from 1 to ${MAX_WORKERS}`);
  // Environment only: the primary sets it per fork; a config file has no say in it.
  const workerIndex = Number(env[WORKER_INDEX_ENV] ?? 0);
  if (!Number.isInteger(workerIndex) || workerIndex < 0 || workerIndex >= MAX_WORKERS) problems.push(`${WORKER_INDEX_ENV} out of range`);
  const config: PgProxyConfig = {
    listen: { host: str('SCOPEGATE_PG_LISTEN_HOST', 'listen.host', '127.0.0.1') as string, port: int('SCOPEGATE_PG_LISTEN_PORT', 'listen.port', 6432) },
    upstream: {
      host: str('SCOPEGATE_PG_UPSTREAM_HOST', 'upstream.host', '127.0.0.1') as string,
      port: int('SCOPEGATE_PG_UPSTREAM_PORT', 'upstream.port', 5432),
      database: required('SCOPEGATE_PG_UPSTREAM_DATABASE', 'upstream.database'),
      user: required('SCOPEGATE_PG_UPSTREAM_USER', 'upstream.user'),
      password,
    },
    resource: required('SCOPEGATE_PG_RESOURCE', 'resource'),
    pdp: {
      url: required('SCOPEGATE_PDP_URL', 'pdp.url'),
      key: required('SCOPEGATE_SHIM_KEY', 'pdp.key'),
      timeoutMs: int('SCOPEGATE_PDP_TIMEOUT_MS', 'pdp.timeoutMs', 2000),
    },
    tls: certFile && keyFile ? { certFile, keyFile } : undefined,
    allowPlaintextNonLoopback: allowPlain === 'true',
    approvalWaitS: int('SCOPEGATE_PG_APPROVAL_WAIT_S', 'approvalWaitS', 0),
    logLevel,
    maxMessageBytes: int('SCOPEGATE_PG_MAX_MESSAGE_BYTES', 'maxMessageBytes', 64 * 1024 * 1024),
    startupTimeoutMs: int('SCOPEGATE_PG_STARTUP_TIMEOUT_MS', 'startupTimeoutMs', 10_000),
    workers,
    workerIndex,
    summaryCacheSize: int('SCOPEGATE_PG_SUMMARY_CACHE_SIZE', 'summaryCacheSize', 5000),
  };
  if (problems.length) throw new ConfigError(problems);
  return Object.freeze(config);
}
