/**
 * Test support: a Fastify instance with the PDP's real error handler and real role check,
 * and only the audit/approval routes, so these suites do not need a policy bundle.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../../pdp-server/src/config.js';
import { loadCredentials } from '../../pdp-server/src/auth/credentials.js';
import authPlugin from '../../pdp-server/src/plugins/auth.js';
import errorsPlugin from '../../pdp-server/src/plugins/errors.js';
import decisionRoutes from '../../pdp-server/src/routes/decisions.js';
import approvalRoutes from '../../pdp-server/src/routes/approvals.js';
import type { ApprovalService } from '../../pdp-server/src/approvals/approval-service.js';
import type { Db } from '../../pdp-server/src/store/db.js';

export const KEYS = {
  admin: 'admin-key-0123456789abcdef',
  auditor: 'auditor-key-0123456789abcdef',
  approver: 'approver-key-0123456789abcdef',
  shim: 'shim-key-0123456789abcdef',
} as const;
export type RoleName = keyof typeof KEYS;

export const KEY_ENV = {
  SCOPEGATE_ADMIN_KEY: KEYS.admin,
  SCOPEGATE_AUDITOR_KEY: KEYS.auditor,
  SCOPEGATE_APPROVER_KEY: KEYS.approver,
  SCOPEGATE_SHIM_KEY: KEYS.shim,
};

export const auth = (role: RoleName) => ({ authorization: `Bearer ${KEYS[role]}` });

export async function buildAuditApp(config: Readonly<Config>, deps: { db: Db; approvals?: ApprovalService }): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  await app.register(errorsPlugin);
  await app.register(authPlugin, { credentials: await loadCredentials(config) });
  await app.register(decisionRoutes, { db: deps.db });
  if (deps.approvals) await app.register(approvalRoutes, { approvals: deps.approvals });
  await app.ready();
  return app;
}
