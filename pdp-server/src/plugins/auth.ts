/**
 * Role checks for the management and decision API. `app.requireRole('admin', ...)` returns an onRequest hook (so the body of an unauthenticated call is never parsed);
 * it answers 401 `unauthenticated` without a known credential and 403
 * `forbidden` for a credential of another role, and sets `request.principal`.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { presentedKey, type Credentials, type Principal, type Role } from '../auth/credentials.js';
import { ScopegateError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    credentials: Credentials;
    requireRole(...roles: Role[]): onRequestAsyncHookHandler;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

export default fp(
  async function authPlugin(app: FastifyInstance, opts: { credentials: Credentials }) {
    app.decorate('credentials', opts.credentials);
    app.decorateRequest('principal', undefined);
    app.decorate('requireRole', (...roles: Role[]) => {
      const allowed = new Set<Role>(roles);
      return async function requireRole(request: FastifyRequest, _reply: FastifyReply) {
        // On the nginx/Envoy check endpoint the Authorization header is the agent's; the
        // shim credential then travels in x-scopegate-key.
        const key = presentedKey(request.headers, true);
        const principal = key ? opts.credentials.identify(key) : undefined;
        if (!principal) throw new ScopegateError('unauthenticated');
        if (!allowed.has(principal.role)) throw new ScopegateError('forbidden');
        request.principal = principal;
      };
    });
  },
  { name: 'scopegate-auth' },
);
