/**
 * Process configuration for the http-proxy: a YAML/JSON file plus environment variables,
 * validated once into a frozen object; every problem is reported at once. Upstream
 * credentials are read here (from an env var or a secret file) and never logged.
 *
 * File shape (YAML):
 *   listen: { host: 127.0.0.1, port: 8282 }
 *   pdp: { url: http://127.0.0.1:8181, key_env: SCOPEGATE_SHIM_KEY }   # or key_file
 *   body_limit_bytes: 2097152
 *   response_limit_bytes: 16777216
 *   approval_wait_s: 30
 *   upstream_timeout_ms: 60000
 *   routes:
 *     - { prefix: /crm, resource: crm, kind: rest, upstream: https://crm.internal,
 *         credential: { header: x-api-key, env: CRM_API_KEY } }
 *     - { prefix: /openai, resource: openai, kind: llm, provider: openai, upstream: https://api.openai.com,
 *         credential: { header: authorization, prefix: "Bearer ", file: /run/secrets/openai } }
 * Environment (overrides the file): SCOPEGATE_HTTP_PROXY_HOST, SCOPEGATE_HTTP_PROXY_PORT,
 * SCOPEGATE_PDP_URL, SCOPEGATE_SHIM_KEY, SCOPEGATE_APPROVAL_WAIT_S, SCOPEGATE_LOG_LEVEL.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ROUTE_KINDS, type RouteConfig, type RouteKind } from './routes.js';
import type { HttpProxyOptions } from './proxy-app.js';

export interface ProxyProcessConfig {
  host: string;
  port: number;
  logLevel: string;
  options: HttpProxyOptions & { pdp: { url: string; key: string } };
}

export class ProxyConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid http-proxy configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function readSecret(spec: Obj, env: Readonly<Record<string, string | undefined>>, where: string, problems: string[]): string | undefined {
  if (typeof spec.env === 'string') {
    const v = env[spec.env];
    if (!v) problems.push(`${where}: environment variable ${spec.env} is not set`);
    return v;
  }
  if (typeof spec.file === 'string') {
    try {
      return readFileSync(spec.file, 'utf8').trim();
    } catch {
      problems.push(`${where}: secret file ${spec.file} cannot be read`);
      return undefined;
    }
  }
  problems.push(`${where}: needs env or file`);
  return undefined;
}

function int(v: unknown, where: string, problems: string[], min: number, max: number): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${where} must be an integer in [${min}, ${max}]`);
    return undefined;
  }
  return n;
}

/** Build the configuration from file text (YAML or JSON) and the environment. */
export function parseProxyConfig(text: string | undefined, env: Readonly<Record<string, string | undefined>>): Readonly<ProxyProcessConfig> {
  const problems: string[] = [];
  let file: Obj = {};
  if (text !== undefined) {
    try {
      const parsed: unknown = parseYaml(text);
      if (isObj(parsed)) file = parsed;
      else problems.push('configuration file must be a mapping');
    } catch (err) {
      problems.push(`configuration file does not parse: ${(err as Error).message}`);
    }
  }
  const listen = isObj(file.listen) ? file.listen : {};
  const pdpFile = isObj(file.pdp) ? file.pdp : {};
  const host = env.SCOPEGATE_HTTP_PROXY_HOST ?? (typeof listen.host === 'string' ? listen.host : '127.0.0.1');
  const port = int(env.SCOPEGATE_HTTP_PROXY_PORT ?? listen.port ?? 8282, 'port', problems, 0, 65535) ?? 8282;
  const pdpUrl = env.SCOPEGATE_PDP_URL ?? (typeof pdpFile.url === 'string' ? pdpFile.url : undefined);
  if (!pdpUrl) problems.push('PDP url is required (SCOPEGATE_PDP_URL or pdp.url)');
  else if (!/^https?:\/\//.test(pdpUrl)) problems.push('PDP url must be http(s)');
  let pdpKey = env.SCOPEGATE_SHIM_KEY;
  if (!pdpKey && (typeof pdpFile.key_env === 'string' || typeof pdpFile.key_file === 'string')) {
    pdpKey = readSecret({ env: pdpFile.key_env, file: pdpFile.key_file }, env, 'pdp key', problems);
  }
  if (!pdpKey) problems.push('shim key is required (SCOPEGATE_SHIM_KEY or pdp.key_env / pdp.key_file)');

  const routes: RouteConfig[] = [];
  const rawRoutes = Array.isArray(file.routes) ? file.routes : [];
  if (rawRoutes.length === 0) problems.push('at least one route is required');
  rawRoutes.forEach((r, i) => {
    const where = `routes[${i}]`;
    if (!isObj(r)) return problems.push(`${where} must be a mapping`);
    const kind = r.kind as RouteKind;
    if (!ROUTE_KINDS.includes(kind)) problems.push(`${where}.kind must be one of ${ROUTE_KINDS.join(', ')}`);
    if (typeof r.resource !== 'string' || !r.resource) problems.push(`${where}.resource is required`);
    if (typeof r.upstream !== 'string') problems.push(`${where}.upstream is required`);
    const route: RouteConfig = { resource: String(r.resource ?? ''), kind, upstream: String(r.upstream ?? '') };
    if (typeof r.prefix === 'string') route.prefix = r.prefix;
    if (typeof r.host === 'string') route.host = r.host;
    if (typeof r.provider === 'string') route.provider = r.provider;
    if (r.case_insensitive === true) route.caseInsensitive = true;
    if (isObj(r.credential)) {
      const header = typeof r.credential.header === 'string' ? r.credential.header : 'authorization';
      const secret = readSecret(r.credential, env, `${where}.credential`, problems);
      const prefix = typeof r.credential.prefix === 'string' ? r.credential.prefix : '';
      if (secret !== undefined) route.credential = { header, value: prefix + secret };
    }
    routes.push(route);
  });

  const bodyLimit = int(file.body_limit_bytes, 'body_limit_bytes', problems, 1, 64 * 1024 * 1024);
  const responseLimit = int(file.response_limit_bytes, 'response_limit_bytes', problems, 1, 1024 * 1024 * 1024);
  const approvalWait = int(env.SCOPEGATE_APPROVAL_WAIT_S ?? file.approval_wait_s, 'approval_wait_s', problems, 0, 3600);
  const upstreamTimeout = int(file.upstream_timeout_ms, 'upstream_timeout_ms', problems, 1, 3_600_000);
  let upstreamCa: string | undefined;
  if (typeof file.upstream_ca_file === 'string') {
    try {
      upstreamCa = readFileSync(file.upstream_ca_file, 'utf8');
    } catch {
      problems.push(`upstream_ca_file ${file.upstream_ca_file} cannot be read`);
    }
  }
  if (problems.length) throw new ProxyConfigError(problems);
  return Object.freeze({
    host,
    port,
    logLevel: env.SCOPEGATE_LOG_LEVEL ?? 'info',
    options: {
      routes,
      pdp: { url: pdpUrl as string, key: pdpKey as string },
      ...(bodyLimit !== undefined ? { bodyLimitBytes: bodyLimit } : {}),
      ...(responseLimit !== undefined ? { responseLimitBytes: responseLimit } : {}),
      ...(approvalWait !== undefined ? { approvalWaitS: approvalWait } : {}),
      ...(upstreamTimeout !== undefined ? { upstreamTimeoutMs: upstreamTimeout } : {}),
      ...(upstreamCa !== undefined ? { upstreamCa } : {}),
    },
  });
}

/** Read the config file named by --config or SCOPEGATE_HTTP_PROXY_CONFIG, then parse. */
export function loadProxyConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Readonly<ProxyProcessConfig> {
  const flag = argv.indexOf('--config');
  const fromFlag = flag >= 0 ? argv[flag + 1] : argv.find((a) => a.startsWith('--config='))?.slice('--config='.length);
  const file = fromFlag ?? env.SCOPEGATE_HTTP_PROXY_CONFIG;
  let text: string | undefined;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new ProxyConfigError([`configuration file ${file} cannot be read`]);
    }
  }
  return parseProxyConfig(text, env);
}
