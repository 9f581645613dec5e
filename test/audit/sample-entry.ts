import { randomUUID } from 'node:crypto';
import type { DecisionLogEntry } from '../../pdp-server/src/audit/decision-log.js';

/** A plausible decision-log entry with fresh ids; tests override what they check. */
export function entry(over: Partial<DecisionLogEntry> = {}): DecisionLogEntry {
  return {
    decision_id: randomUUID(),
    time: new Date().toISOString(),
    subject: 'agent-1',
    issuer: 'scopegate',
    jti: randomUUID(),
    chain: 'support-bot',
    step: 'lookup',
    session_id: 'sess-1',
    shim: 'pg-proxy',
    resource_kind: 'sql',
    resource_name: 'orders-db',
    request_summary: { sql: { statements: [{ command: 'select', relations: ['public.orders'] }] } },
    effect: 'allow',
    reasons: ['scope sql:orders-db:select:public.orders'],
    code: null,
    policy_revision: 'rev-1',
    latency_us: 120,
    cache_hit: false,
    approval_id: null,
    ...over,
  };
}

