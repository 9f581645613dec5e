/**
 * The PDP's services, created once and released on close: the policy engine, the token
 * service, the decision pipeline and, as they are configured, the store, cache,
 * revocations, approvals and cluster distribution.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { DecisionService, type RevocationCheck } from '../decision/decision-service.js';
import { PolicyEngine } from '../policy/policy-engine.js';
import { createTokenService, type TokenService } from '../tokens/token-service.js';

export interface ClusterHooks {
  /** Store an uploaded bundle and announce it to every replica. */
  publishPolicy(revision: string, bundle: Buffer): Promise<void>;
  /** The newest uploaded bundle, which a starting replica loads instead of its folders. */
  latestPolicy(): Promise<{ revision: string; bundle: Buffer } | undefined>;
}

declare module 'fastify' {
  interface FastifyInstance {
    engine: PolicyEngine;
    tokens: TokenService;
    decisions: DecisionService;
    revocations: RevocationCheck | undefined;
    cluster: ClusterHooks;
  }
}

export default fp(
  async function servicesPlugin(app: FastifyInstance, opts: { config: Readonly<Config> }) {
    const { config } = opts;
    const engine = new PolicyEngine();
    const tokens = await createTokenService(config, app.log);
    app.addHook('onClose', () => tokens.close());

    const decisions = new DecisionService({
      engine,
      tokens,
      observer: app.metrics,
      onError: (err, code) => app.log.error({ err, code }, 'decision failed; answered deny'),
    });

    app.decorate('engine', engine);
    app.decorate('tokens', tokens);
    app.decorate('decisions', decisions);
    app.decorate('revocations', undefined);
    app.decorate('cluster', {
      async publishPolicy() {},
      async latestPolicy() {
        return undefined;
      },
    } satisfies ClusterHooks);
  },
  { name: 'scopegate-services', dependencies: ['scopegate-metrics'] },
);
