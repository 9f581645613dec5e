/**
 * Approval management: approvers list and decide, shims long-poll one approval while they
 * hold a request. The requesting subject can never decide (enforced by the service).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorBody } from '../contract.js';
import { ScopegateError } from '../errors.js';
import type { ApprovalService } from '../approvals/approval-service.js';

const Nullable = <T extends ReturnType<typeof Type.String | typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const STATUSES = ['pending', 'approved', 'denied', 'expired', 'consumed'] as const;

export const ApprovalSchema = Type.Object(
  {
    id: Type.String(),
    subject: Type.String(),
    fingerprint: Type.String(),
    resource: Type.Object({ kind: Type.String(), name: Type.String() }, { additionalProperties: false }),
    reasons: Type.Array(Type.String()),
    summary: Type.Unknown(),
    status: Type.Union(STATUSES.map((s) => Type.Literal(s))),
    mode: Type.Union([Type.Literal('once'), Type.Literal('window')]),
    window_s: Nullable(Type.Number()),
    decision_id: Type.String(),
    session_id: Nullable(Type.String()),
    chain: Nullable(Type.String()),
    step: Nullable(Type.String()),
    created_at: Type.String(),
    expires_at: Type.String(),
    decided_at: Nullable(Type.String()),
    decided_by: Nullable(Type.String()),
    note: Nullable(Type.String()),
    uses: Type.Integer(),
  },
  { additionalProperties: false },
);

const ListQuery = Type.Object(
  {
    status: Type.Optional(Type.Union(STATUSES.map((s) => Type.Literal(s)))),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false });
/** Long-poll bound: proxies and clients commonly time out idle requests after 60 s. */
const WaitQuery = Type.Object({ wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 })) }, { additionalProperties: false });
const DecideBody = Type.Union([
  Type.Object({ note: Type.Optional(Type.String({ maxLength: 2000 })) }, { additionalProperties: false }),
  Type.Null(),
]);
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody, 503: ErrorBody };

export default async function approvalRoutes(app: FastifyInstance, opts: { approvals: ApprovalService }): Promise<void> {
  const { approvals } = opts;

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/v1/approvals',
    {
      onRequest: app.requireRole('auditor', 'admin', 'approver'),
      schema: { tags: ['approvals'], querystring: ListQuery, response: { 200: Type.Object({ items: Type.Array(ApprovalSchema) }), ...errors } },
    },
    async (request) => {
      const filter: { status?: string; limit?: number } = {};
      if (request.query.status !== undefined) filter.status = request.query.status;
      if (request.query.limit !== undefined) filter.limit = request.query.limit;
      return { items: await approvals.list(filter) };
    },
  );

  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof WaitQuery> }>(
    '/v1/approvals/:id',
    {
      onRequest: app.requireRole('shim', 'admin', 'approver'),
      schema: { tags: ['approvals'], params: IdParams, querystring: WaitQuery, response: { 200: ApprovalSchema, ...errors } },
    },
    async (request) => {
      const wait = request.query.wait ?? 0;
      const a = wait > 0 ? await approvals.wait(request.params.id, wait) : await approvals.get(request.params.id);
      if (!a) throw new ScopegateError('not_found', 'No approval with that id.');
      return a;
    },
  );

  for (const verdict of ['approve', 'deny'] as const) {
    app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof DecideBody> }>(
      `/v1/approvals/:id/${verdict}`,
      {
        onRequest: app.requireRole('approver'),
        schema: { tags: ['approvals'], params: IdParams, body: DecideBody, response: { 200: ApprovalSchema, ...errors } },
      },
      async (request) => {
        const principal = request.principal;
        if (!principal) throw new ScopegateError('unauthenticated');
        return approvals.decide(request.params.id, verdict, principal, request.body?.note);
      },
    );
  }
}
