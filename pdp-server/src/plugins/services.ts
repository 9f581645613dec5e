/**
 * The PDP's services, created once and released on close (in reverse order): the store
 * (Postgres or PGlite, migrated at start), the decision log, approvals, the cluster bus
 * (Redis pub/sub, when REDIS_URL is set), revocations, policy distribution, the decision
 * cache, the token service and the decision pipeline that uses them all.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { createApprovalService, type ApprovalService } from '../approvals/approval-service.js';
import { createDecisionLog, createDisabledDecisionLog, type DecisionLog } from '../audit/decision-log.js';
import { createDecisionCache, decisionCacheKey } from '../cache/decision-cache.js';
import { createClusterBus } from '../cluster/cluster-bus.js';
import { createPolicyDistribution } from '../cluster/policy-distribution.js';
import { DecisionService } from '../decision/decision-service.js';
import { PolicyEngine } from '../policy/policy-engine.js';
import { createRevocationService, type RevocationService } from '../revocation/revocation-service.js';
import { migrate, openDb, type Db } from '../store/db.js';
import { createTokenService, type TokenService } from '../tokens/token-service.js';

export interface ClusterHooks {
  /** Store an uploaded bundle and announce it to every replica. */
  publishPolicy(revision: string, bundle: Buffer): Promise<void>;
  /** The newest uploaded bundle, which a starting replica loads instead of its folders. */
  latestPolicy(): Promise<{ revision: string; bundle: Buffer } | undefined>;
  /** Called with every bundle another replica announces. */
  onPolicy(fn: (revision: string, bundle: Buffer) => void): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    engine: PolicyEngine;
    tokens: TokenService;
    decisions: DecisionService;
    db: Db;
    decisionLog: DecisionLog;
    approvals: ApprovalService;
    revocations: RevocationService;
    cluster: ClusterHooks;
  }
}

export default fp(
  async function servicesPlugin(app: FastifyInstance, opts: { config: Readonly<Config> }) {
    const { config } = opts;
    const log = app.log;
    // Closed in reverse order of creation.
    const closers: (() => Promise<void>)[] = [];
    app.addHook('onClose', async () => {
      for (const close of closers.reverse()) {
        await close().catch((err: unknown) => log.error({ err }, 'closing a service failed'));
      }
    });

    const db = await openDb(config, log);
    closers.push(() => db.close());
    await migrate(db);

    const decisionLog = config.decisionLog ? await createDecisionLog(db, config, log) : createDisabledDecisionLog();
    closers.push(() => decisionLog.close());
    const approvals = await createApprovalService(db, config, log, decisionLog);
    closers.push(() => approvals.close());

    const bus = createClusterBus(config, log);
    if (bus) closers.push(() => bus.close());
    const revocations = await createRevocationService(db, config, log, bus);
    closers.push(() => revocations.close());
    const distribution = await createPolicyDistribution(db, config, log, bus);
    closers.push(() => distribution.close());

    const cache = createDecisionCache(config, log);
    closers.push(() => cache.close());
    const tokens = await createTokenService(config, log);
    closers.push(() => tokens.close());

    const engine = new PolicyEngine();
    const decisions = new DecisionService({
      engine,
      tokens,
      revocations,
      cache: cache.kind === 'off' ? undefined : cache,
      cacheKey: decisionCacheKey,
      approvals,
      log: decisionLog,
      observer: app.metrics,
      onError: (err, code) => log.error({ err, code }, 'decision failed; answered deny'),
    });

    app.decorate('db', db);
    app.decorate('engine', engine);
    app.decorate('tokens', tokens);
    app.decorate('decisions', decisions);
    app.decorate('decisionLog', decisionLog);
    app.decorate('approvals', approvals);
    app.decorate('revocations', revocations);
    app.decorate('cluster', {
      publishPolicy: (revision, bundle) => distribution.publish(revision, bundle),
      latestPolicy: () => distribution.latest(),
      onPolicy: (fn) => distribution.onBundle(fn),
    } satisfies ClusterHooks);
  },
  { name: 'scopegate-services', dependencies: ['scopegate-metrics'] },
);
