/**
 * Adapter for proxies that already sit in front of a service: nginx `auth_request` and
 * Envoy ext_authz (HTTP mode). The proxy forwards the original request's headers; the
 * answer is 200 (allow) or 403 (deny, approval required, or any error) with the decision id
 * in `x-scopegate-decision-id`. The agent's token is the original `Authorization: Bearer`;
 * the proxy's own shim credential travels in `x-scopegate-key`.
 *
 *   nginx: `GET /v1/check/http` with `X-Original-Method`, `X-Original-URI`, `X-Scopegate-Resource`.
 *   Envoy: `path_prefix: /v1/check/http` — the original method, and the original path appended.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DECISION_ID_HEADER, type DecideRequest } from '../contract.js';
import { normalizePath, splitTarget } from '../../../shims/http-proxy/src/path-normalize.js';
import { queryRecord } from '../../../shims/http-proxy/src/decision-input.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** Request headers that may inform a decision (never credentials or cookies). */
const FORWARDED_HEADERS = ['content-type', 'content-length', 'user-agent', 'x-request-id'];

export default async function checkRoutes(app: FastifyInstance) {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const h = request.headers;
    const one = (name: string): string | undefined => {
      const v = h[name];
      return typeof v === 'string' && v !== '' ? v : undefined;
    };
    const wildcard = (request.params as { '*'?: string })['*'];
    const method = (one('x-original-method') ?? (wildcard !== undefined ? request.method : 'GET')).toUpperCase();
    const target = one('x-original-uri') ?? (wildcard !== undefined ? `/${wildcard}${queryOf(request.url)}` : undefined);
    // Behind Envoy the query string is the agent's own: the resource comes only from the header
    // the proxy's configuration sets. nginx calls a fixed check URL, so its query is trusted.
    const resource = one('x-scopegate-resource') ?? (wildcard === undefined ? (request.query as { resource?: string }).resource : undefined);
    const auth = one('authorization');
    const token = auth && /^Bearer\s+\S+$/i.test(auth) ? auth.replace(/^Bearer\s+/i, '') : '';

    let body: DecideRequest;
    try {
      if (!target || !resource) throw new Error('missing original URI or resource');
      const { path, query } = splitTarget(target);
      const headers: Record<string, string> = {};
      for (const name of FORWARDED_HEADERS) {
        const v = one(name);
        if (v !== undefined) headers[name] = v;
      }
      body = {
        token,
        resource: { kind: 'http', name: resource },
        request: {
          http: {
            method,
            path: normalizePath(path),
            ...(one('x-forwarded-host') ?? one('host') ? { host: (one('x-forwarded-host') ?? one('host'))! } : {}),
            ...(query ? { query: queryRecord(query) } : {}),
            headers,
          },
        },
        context: { shim: wildcard !== undefined ? 'envoy' : 'nginx', ...(request.ip ? { client_addr: one('x-real-ip') ?? request.ip } : {}) },
      };
    } catch (err) {
      // A request the adapter cannot describe exactly is denied, like every other error.
      reply.code(403).header('content-type', 'application/json');
      return { code: 'bad_request', message: `cannot check this request: ${(err as Error).message}` };
    }
    const decision = await app.decisions.decide(body, { via: 'check' });
    reply.header(DECISION_ID_HEADER, decision.decision_id);
    if (decision.allow) {
      reply.code(200);
      return { decision_id: decision.decision_id, effect: decision.effect };
    }
    reply.code(403);
    if (decision.obligations.approval) reply.header('x-scopegate-approval-id', decision.obligations.approval.id);
    return { code: decision.code ?? 'denied', message: 'denied by policy', decision_id: decision.decision_id };
  };

  const opts = {
    onRequest: app.requireRole('shim', 'admin'),
    schema: { tags: ['adapters'], summary: 'nginx auth_request / Envoy ext_authz (HTTP) check', hide: false },
  };
  app.route({ method: [...METHODS], url: '/v1/check/http', ...opts, handler });
  app.route({ method: [...METHODS], url: '/v1/check/http/*', ...opts, handler });
}

function queryOf(url: string): string {
  const i = url.indexOf('?');
  return i < 0 ? '' : url.slice(i);
}
