/**
 * Configuration: read from the environment once, validated once, frozen.
 * Every problem is reported at once and the server refuses to start. Nothing else in
 * pdp-server reads process.env.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUNDLED_POLICY_DIR = path.join(REPO_ROOT, 'policies');

export interface TrustedIssuer {
  issuer: string;
  jwks_url: string;
  /** Audience expected in this issuer's tokens; defaults to the PDP's own audience. */
  audience?: string;
}

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** Rego folders compiled together; the first is usually the bundled library. */
  policyDirs: readonly string[];
  /** A prebuilt bundle (tar.gz from `opa build -t wasm`) to load instead of compiling policyDirs. */
  policyBundle: string | undefined;
  /** Recompile and swap when a .rego or data file in policyDirs changes. */
  policyWatch: boolean;
  /** Path to the opa CLI, when given; otherwise PATH, then .tools/bin/opa. */
  opaBin: string | undefined;
  keys: {
    admin: string | undefined;
    shim: string | undefined;
    auditor: string | undefined;
    approver: string | undefined;
    /** Personal approver keys (`SCOPEGATE_APPROVERS=alice:key,bob:key`): approvals record the name. */
    approvers: readonly { name: string; key: string }[];
  };
  redisUrl: string | undefined;
  databaseUrl: string | undefined;
  cache: 'auto' | 'memory' | 'redis' | 'off';
  decisionLog: boolean;
  logRetentionDays: number;
  /**
   * The decision spool's memory tier (SCOPEGATE_SPOOL_MEMORY_DIR): `auto` (a private folder
   * under /dev/shm when it is a tmpfs), `off` (disk only), or an absolute path.
   */
  spoolMemoryDir: string;
  logLevel: string;
  tokens: {
    issuer: string;
    audience: string;
    defaultTtlS: number;
    maxTtlS: number;
    clockSkewS: number;
    algorithms: readonly string[];
    trustedIssuers: readonly TrustedIssuer[];
  };
  approvals: {
    ttlS: number;
    webhookUrl: string | undefined;
    webhookSecret: string | undefined;
  };
  /** Replica name used in logs and pub/sub; defaults to host:pid. */
  instanceId: string;
  /**
   * Name of the group of replicas that share Redis: prefixes pub/sub channels and cache keys
   * (Redis pub/sub ignores the logical db index, so this is what keeps two deployments apart).
   */
  cluster: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const SUPPORTED_ALGS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'];

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const int = (name: string, dflt: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got ${JSON.stringify(raw)})`);
      return dflt;
    }
    return n;
  };
  const bool = (name: string, dflt: boolean): boolean => {
    const raw = str(name)?.toLowerCase();
    if (raw === undefined) return dflt;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    problems.push(`${name} must be true or false (got ${JSON.stringify(raw)})`);
    return dflt;
  };
  const url = (name: string, protocols: string[]): string | undefined => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) problems.push(`${name} must use ${protocols.join(' or ')}`);
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return raw;
  };
  const key = (name: string): string | undefined => {
    const v = str(name);
    if (v !== undefined && v.length < 16) problems.push(`${name} must be at least 16 characters`);
    return v;
  };

  const policyDirs = (str('SCOPEGATE_POLICY_DIR') ?? BUNDLED_POLICY_DIR)
    .split(path.delimiter)
    .filter(Boolean)
    .map((d) => path.resolve(d));

  const cache = str('SCOPEGATE_CACHE') ?? 'auto';
  if (!['auto', 'memory', 'redis', 'off'].includes(cache)) problems.push('SCOPEGATE_CACHE must be auto, memory, redis or off');

  const algorithms = (str('SCOPEGATE_TOKEN_ALGS') ?? 'EdDSA,ES256,RS256').split(',').map((a) => a.trim()).filter(Boolean);
  for (const a of algorithms) {
    if (!SUPPORTED_ALGS.includes(a)) problems.push(`SCOPEGATE_TOKEN_ALGS: ${a} is not allowed (choose from ${SUPPORTED_ALGS.join(', ')})`);
  }

  let trustedIssuers: TrustedIssuer[] = [];
  const ti = str('SCOPEGATE_TRUSTED_ISSUERS');
  if (ti !== undefined) {
    try {
      const parsed: unknown = JSON.parse(ti);
      if (!Array.isArray(parsed)) throw new Error('not an array');
      trustedIssuers = parsed.map((p: unknown, i) => {
        const o = p as Record<string, unknown>;
        if (typeof o?.issuer !== 'string' || typeof o?.jwks_url !== 'string') {
          throw new Error(`entry ${i} needs issuer and jwks_url strings`);
        }
        new URL(o.jwks_url);
        return {
          issuer: o.issuer,
          jwks_url: o.jwks_url,
          ...(typeof o.audience === 'string' ? { audience: o.audience } : {}),
        };
      });
    } catch (err) {
      problems.push(`SCOPEGATE_TRUSTED_ISSUERS must be a JSON array of {issuer, jwks_url, audience?}: ${(err as Error).message}`);
    }
  }

  const defaultTtlS = int('SCOPEGATE_TOKEN_DEFAULT_TTL_S', 300, 1, 86400 * 30);
  const maxTtlS = int('SCOPEGATE_TOKEN_MAX_TTL_S', 3600, 1, 86400 * 30);
  if (defaultTtlS > maxTtlS) problems.push('SCOPEGATE_TOKEN_DEFAULT_TTL_S must not exceed SCOPEGATE_TOKEN_MAX_TTL_S');

  const port = int('SCOPEGATE_PORT', 8181, 0, 65535);
  const host = str('SCOPEGATE_HOST') ?? '127.0.0.1';

  const config: Config = {
    host,
    port,
    dataDir: path.resolve(str('SCOPEGATE_DATA_DIR') ?? './.scopegate'),
    policyDirs,
    policyBundle: str('SCOPEGATE_POLICY_BUNDLE') ? path.resolve(str('SCOPEGATE_POLICY_BUNDLE')!) : undefined,
    policyWatch: bool('SCOPEGATE_POLICY_WATCH', str('NODE_ENV') !== 'production'),
    opaBin: str('SCOPEGATE_OPA_BIN'),
    keys: {
      admin: key('SCOPEGATE_ADMIN_KEY'),
      shim: key('SCOPEGATE_SHIM_KEY'),
      auditor: key('SCOPEGATE_AUDITOR_KEY'),
      approver: key('SCOPEGATE_APPROVER_KEY'),
      approvers: (str('SCOPEGATE_APPROVERS') ?? '')
        .split(',')
        .filter(Boolean)
        .map((entry) => {
          const i = entry.indexOf(':');
          const name = entry.slice(0, i).trim();
          const k = entry.slice(i + 1).trim();
          if (i <= 0 || !/^[\w.@-]{1,128}$/.test(name)) problems.push(`SCOPEGATE_APPROVERS: "${name}" is not a valid name (name:key,…)`);
          if (k.length < 16) problems.push(`SCOPEGATE_APPROVERS: the key of ${name} must be at least 16 characters`);
          return { name, key: k };
        }),
    },
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    cache: cache as Config['cache'],
    decisionLog: bool('SCOPEGATE_DECISION_LOG', true),
    logRetentionDays: int('SCOPEGATE_LOG_RETENTION_DAYS', 30, 1, 3650),
    spoolMemoryDir: str('SCOPEGATE_SPOOL_MEMORY_DIR') ?? 'auto',
    logLevel: str('SCOPEGATE_LOG_LEVEL') ?? 'info',
    tokens: {
      issuer: str('SCOPEGATE_ISSUER') ?? 'scopegate',
      audience: str('SCOPEGATE_AUDIENCE') ?? 'scopegate',
      defaultTtlS,
      maxTtlS,
      clockSkewS: int('SCOPEGATE_CLOCK_SKEW_S', 5, 0, 300),
      algorithms,
      trustedIssuers,
    },
    approvals: {
      ttlS: int('SCOPEGATE_APPROVAL_TTL_S', 900, 1, 86400 * 7),
      webhookUrl: url('SCOPEGATE_APPROVAL_WEBHOOK_URL', ['http:', 'https:']),
      webhookSecret: str('SCOPEGATE_APPROVAL_WEBHOOK_SECRET'),
    },
    instanceId: str('SCOPEGATE_INSTANCE_ID') ?? `${host}:${port}:${process.pid}`,
    cluster: str('SCOPEGATE_CLUSTER') ?? 'scopegate',
  };
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(config.cluster)) problems.push('SCOPEGATE_CLUSTER must be 1-64 of A-Z a-z 0-9 _ . -');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(config.logLevel)) {
    problems.push('SCOPEGATE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent');
  }
  if (!['auto', 'off'].includes(config.spoolMemoryDir) && !path.isAbsolute(config.spoolMemoryDir)) {
    problems.push('SCOPEGATE_SPOOL_MEMORY_DIR must be auto, off or an absolute path');
  }
  if (config.cache === 'redis' && !config.redisUrl) problems.push('SCOPEGATE_CACHE=redis needs REDIS_URL');

  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
