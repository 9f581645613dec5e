/**
 * The route table: which resource a request reaches, where it goes upstream, and which
 * credential the proxy adds. Routes are validated once, when the proxy is built.
 */
import { normalizePath } from './path-normalize.js';

export const ROUTE_KINDS = ['rest', 'llm', 'vector'] as const;
export type RouteKind = (typeof ROUTE_KINDS)[number];

export interface RouteConfig {
  /** Path prefix the agent calls (`/crm`); stripped before forwarding. */
  prefix?: string;
  /** Host name the agent calls (Host header); matched before prefixes. */
  host?: string;
  /** Resource name used in decisions and scopes (`http:<resource>:…`, `llm:<resource>:…`). */
  resource: string;
  kind: RouteKind;
  /** Upstream base URL; its path is prepended to the forwarded path. */
  upstream: string;
  /** Header the proxy sets on every upstream request (the agent never holds it). */
  credential?: { header: string; value: string };
  /** LLM provider name for decisions (default: the resource name). */
  provider?: string;
  /** The upstream treats paths case-insensitively. */
  caseInsensitive?: boolean;
}

export interface Route extends RouteConfig {
  prefix: string;
  upstreamUrl: URL;
  /** Upstream path without trailing slash ('' for the root). */
  basePath: string;
  credentialHeader: string | undefined;
}

export class RouteConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid http-proxy routes:\n  - ${problems.join('\n  - ')}`);
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Validate and prepare the table; every problem is reported at once. */
export function compileRoutes(configs: readonly RouteConfig[]): Route[] {
  const problems: string[] = [];
  const routes: Route[] = [];
  configs.forEach((c, i) => {
    const where = `routes[${i}]`;
    if (!c.resource || typeof c.resource !== 'string') problems.push(`${where}.resource is required`);
    if (!ROUTE_KINDS.includes(c.kind)) problems.push(`${where}.kind must be one of ${ROUTE_KINDS.join(', ')}`);
    if (c.prefix === undefined && c.host === undefined) problems.push(`${where} needs a prefix or a host`);
    let url: URL | undefined;
    try {
      url = new URL(c.upstream);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') problems.push(`${where}.upstream must be http(s)`);
      if (url.search || url.hash || url.username || url.password) problems.push(`${where}.upstream must not carry a query, fragment or userinfo`);
    } catch {
      problems.push(`${where}.upstream is not a URL`);
    }
    let prefix = '';
    if (c.prefix !== undefined && c.prefix !== '/' && c.prefix !== '') {
      try {
        prefix = normalizePath(c.prefix, c.caseInsensitive ? { caseInsensitive: true } : {}).replace(/\/$/, '');
      } catch {
        problems.push(`${where}.prefix is not a valid path`);
      }
    }
    if (c.credential && (!TOKEN.test(c.credential.header) || /[\r\n\0]/.test(c.credential.value))) {
      problems.push(`${where}.credential has an invalid header name or value`);
    }
    if (url) {
      routes.push({
        ...c,
        prefix,
        ...(c.host !== undefined ? { host: c.host.toLowerCase() } : {}),
        upstreamUrl: url,
        basePath: url.pathname.replace(/\/+$/, ''),
        credentialHeader: c.credential?.header.toLowerCase(),
      });
    }
  });
  if (problems.length) throw new RouteConfigError(problems);
  // Host routes first, then the longest prefix wins.
  return routes.sort((a, b) => Number(b.host !== undefined) - Number(a.host !== undefined) || b.prefix.length - a.prefix.length);
}

/**
 * Find the route for a host and a normalised path. Returns the path relative to the route
 * (what the upstream API defines and scopes are written against).
 */
export function matchRoute(routes: readonly Route[], host: string | undefined, path: string): { route: Route; rest: string } | undefined {
  const h = host?.toLowerCase().replace(/:\d+$/, '');
  for (const route of routes) {
    if (route.host !== undefined && route.host !== h) continue;
    const p = route.caseInsensitive ? path.toLowerCase() : path;
    if (route.prefix === '') return { route, rest: p };
    if (p === route.prefix) return { route, rest: '/' };
    if (p.startsWith(route.prefix + '/')) return { route, rest: p.slice(route.prefix.length) };
  }
  return undefined;
}
