/**
 * Prometheus metrics on a registry of this app's own (so several apps in one process, as in
 * tests, never share counters): decisions by effect, decision latency, cache hits and misses,
 * and the loaded policy revision.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecisionObserver } from '../decision/decision-service.js';

export interface PdpMetrics extends DecisionObserver {
  registry: Registry;
  policyLoaded(revision: string, source: string): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: PdpMetrics;
  }
}

export function createMetrics(): PdpMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'scopegate_' });
  const decisions = new Counter({
    name: 'scopegate_decisions_total',
    help: 'Decisions answered, by effect and error code (code="" when the policy decided).',
    labelNames: ['effect', 'code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'scopegate_decision_duration_seconds',
    help: 'Time to answer a decision inside the PDP (token check, cache, evaluation, approval).',
    labelNames: ['cache'] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [registry],
  });
  const cache = new Counter({
    name: 'scopegate_decision_cache_total',
    help: 'Decision cache lookups by result (hit or miss).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const policy = new Gauge({
    name: 'scopegate_policy_info',
    help: 'The loaded policy bundle (value 1), labelled by revision and source.',
    labelNames: ['revision', 'source'] as const,
    registers: [registry],
  });
  return {
    registry,
    observe({ effect, cacheHit, seconds, code }) {
      decisions.inc({ effect, code: code ?? '' });
      latency.observe({ cache: cacheHit ? 'hit' : 'miss' }, seconds);
      cache.inc({ result: cacheHit ? 'hit' : 'miss' });
    },
    policyLoaded(revision, source) {
      policy.reset();
      policy.set({ revision, source }, 1);
    },
  };
}

export default fp(
  async function metricsPlugin(app: FastifyInstance) {
    const metrics = createMetrics();
    app.decorate('metrics', metrics);
    app.get(
      '/metrics',
      {
        schema: {
          tags: ['health'],
          summary: 'Prometheus metrics',
          produces: ['text/plain'],
          response: { 200: { type: 'string' } },
        },
      },
      async (_req, reply) => {
        reply.type(metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  },
  { name: 'scopegate-metrics' },
);
