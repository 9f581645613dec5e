/**
 * Builds the PDP: plugins for each concern, then the routes. `server.ts` listens; tests call
 * `buildApp(config)` and use `app.inject` or `app.listen({port: 0})`.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import type { Config } from './config.js';
import { LIMITS } from './contract.js';
import { ERRORS } from './errors.js';
import { loadCredentials } from './auth/credentials.js';
import authPlugin from './plugins/auth.js';
import errorsPlugin from './plugins/errors.js';
import metricsPlugin from './plugins/metrics.js';
import policyPlugin from './plugins/policy.js';
import servicesPlugin from './plugins/services.js';
import decideRoutes from './routes/decide.js';
import dataApiRoutes from './routes/data-api.js';
import healthRoutes from './routes/health.js';
import tokenRoutes from './routes/tokens.js';
import checkRoutes from './routes/check.js';
import approvalRoutes from './routes/approvals.js';
import decisionRoutes from './routes/decisions.js';
import revocationRoutes from './routes/revocations.js';

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
}

export async function buildApp(config: Readonly<Config>, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: LIMITS.bodyBytes,
    // The decision log is the audit trail; per-request access logs would only duplicate it.
    logController: new LogController({ disableRequestLogging: true }),
    // Errors raised by the router itself (over-long path parameters, malformed URLs) get the
    // same {code, message} body as every other error.
    frameworkErrors: (err, _request, reply) => {
      const code = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'uri_too_long' : 'bad_request';
      const raw = reply as unknown as { code(n: number): { send(b: unknown): void } };
      raw.code(ERRORS[code].status).send({ code, message: ERRORS[code].message });
    },
    // Fastify's default coercion (query strings arrive as text: ?wait=30, ?limit=50).
    ajv: { customOptions: { allErrors: false, coerceTypes: 'array', removeAdditional: false } },
    return503OnClosing: true,
    forceCloseConnections: true,
    // Embedded PGlite takes seconds to initialise a new data folder on a small machine.
    pluginTimeout: 120_000,
  });

  await app.register(errorsPlugin);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'scopegate PDP',
        description: 'Policy decisions for AI agents: scoped tokens, Rego policies compiled to WASM, audit trail.',
        version: '0.1.0',
      },
      components: {
        securitySchemes: { credential: { type: 'http', scheme: 'bearer', description: 'A role key (admin, shim, auditor, approver)' } },
      },
      security: [{ credential: [] }],
    },
  });
  await app.register(authPlugin, { credentials: await loadCredentials(config) });
  await app.register(metricsPlugin);
  await app.register(servicesPlugin, { config });
  await app.register(policyPlugin, {
    config,
    engine: app.engine,
    onUpload: (revision, bundle) => app.cluster.publishPolicy(revision, bundle),
    initialBundle: await app.cluster.latestPolicy(),
  });
  // A bundle uploaded on another replica: load it here too (the cache keys carry the
  // revision, so nothing is answered from the old revision's entries after the swap).
  app.cluster.onPolicy((revision, bundle) => {
    if (app.engine.active?.revision === revision) return;
    app.engine.loadBundle(bundle, 'upload').catch((err: unknown) => {
      app.log.error({ err, revision }, 'announced policy bundle failed to load; keeping the running policy');
    });
  });

  await app.register(healthRoutes);
  await app.register(tokenRoutes);
  await app.register(decideRoutes);
  await app.register(dataApiRoutes);
  await app.register(checkRoutes);
  await app.register(revocationRoutes, { revocations: app.revocations });
  await app.register(decisionRoutes, { db: app.db });
  await app.register(approvalRoutes, { approvals: app.approvals });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
