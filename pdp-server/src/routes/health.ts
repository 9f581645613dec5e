/** Liveness and readiness: `/healthz` answers while the process runs; `/readyz` once a policy is loaded. */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';

const Health = Type.Object({ status: Type.String(), policy_revision: Type.Optional(Type.String()) });

export default async function healthRoutes(app: FastifyInstance) {
  app.get('/healthz', { schema: { tags: ['health'], summary: 'Liveness', response: { 200: Health } } }, async () => ({ status: 'ok' }));
  app.get(
    '/readyz',
    { schema: { tags: ['health'], summary: 'Readiness: a policy is loaded', response: { 200: Health, 503: Health } } },
    async (_request, reply) => {
      const active = app.policy.active;
      if (!active) {
        reply.code(503);
        return { status: 'no_policy' };
      }
      return { status: 'ready', policy_revision: active.revision };
    },
  );
}
