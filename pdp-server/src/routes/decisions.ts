/**
 * The audit query API (auditor or admin): filtered decision listing with keyset pagination,
 * one decision, the ordered timeline of a session (replay), and a streaming NDJSON export in
 * OPA decision-log field names so existing OPA log tooling can ingest it.
 */
import { Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorBody } from '../contract.js';
import { ScopegateError } from '../errors.js';
import type { Db } from '../store/db.js';
import { getDecision, listDecisions, scanDecisions, type DecisionFilter, type DecisionRecord } from '../store/decision-queries.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const DecisionRecordSchema = Type.Object(
  {
    decision_id: Type.String(),
    time: Type.String(),
    event: Type.String(),
    instance: Nullable(Type.String()),
    subject: Nullable(Type.String()),
    issuer: Nullable(Type.String()),
    jti: Nullable(Type.String()),
    chain: Nullable(Type.String()),
    step: Nullable(Type.String()),
    session_id: Nullable(Type.String()),
    shim: Nullable(Type.String()),
    resource_kind: Type.String(),
    resource_name: Type.String(),
    request_summary: Type.Unknown(),
    effect: Type.String(),
    reasons: Type.Array(Type.String()),
    code: Nullable(Type.String()),
    policy_revision: Type.String(),
    latency_us: Type.Number(),
    cache_hit: Type.Boolean(),
    approval_id: Nullable(Type.String()),
  },
  { additionalProperties: false },
);

const IsoTime = Type.String({ format: 'date-time', maxLength: 64 });
const Filter = {
  subject: Type.Optional(Type.String({ maxLength: 256 })),
  resource: Type.Optional(Type.String({ maxLength: 330 })),
  effect: Type.Optional(Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('approval_required')])),
  session_id: Type.Optional(Type.String({ maxLength: 256 })),
  chain: Type.Optional(Type.String({ maxLength: 256 })),
  event: Type.Optional(Type.String({ maxLength: 64 })),
  from: Type.Optional(IsoTime),
  to: Type.Optional(IsoTime),
};
const ListQuery = Type.Object(
  {
    ...Filter,
    cursor: Type.Optional(Type.String({ maxLength: 1024 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'desc' })),
  },
  { additionalProperties: false },
);
const ExportQuery = Type.Object(Filter, { additionalProperties: false });
const SessionQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 1024 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1000 })),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false });
const Page = Type.Object(
  { items: Type.Array(DecisionRecordSchema), next_cursor: Nullable(Type.String()) },
  { additionalProperties: false },
);
const SessionTimeline = Type.Object(
  { session_id: Type.String(), items: Type.Array(DecisionRecordSchema), next_cursor: Nullable(Type.String()) },
  { additionalProperties: false },
);
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 500: ErrorBody, 503: ErrorBody };

function filterOf(q: Static<typeof ExportQuery>): DecisionFilter {
  return {
    subject: q.subject,
    resource: q.resource,
    effect: q.effect,
    session_id: q.session_id,
    chain: q.chain,
    event: q.event,
    from: q.from,
    to: q.to,
  };
}

/**
 * One log row as an OPA decision-log event (docs: "Decision Logs" → event format). Fields OPA
 * has no slot for (effect details, cache, approval) stay in `result` and `labels`.
 */
export function toOpaEvent(r: DecisionRecord): Record<string, unknown> {
  return {
    decision_id: r.decision_id,
    timestamp: r.time,
    path: 'scopegate/main/decision',
    type: r.event === 'decision' ? 'openpolicyagent.org/decision_logs' : `scopegate.dev/${r.event}`,
    revision: r.policy_revision,
    bundles: { scopegate: { revision: r.policy_revision } },
    input: {
      subject: { sub: r.subject, iss: r.issuer, jti: r.jti },
      resource: { kind: r.resource_kind, name: r.resource_name },
      request: r.request_summary,
      context: { session_id: r.session_id, chain: r.chain, step: r.step, shim: r.shim },
    },
    result: { effect: r.effect, allow: r.effect === 'allow', reasons: r.reasons, code: r.code, approval_id: r.approval_id },
    requested_by: r.shim ?? '',
    labels: { id: r.instance ?? '', version: PDP_VERSION, event: r.event, cache_hit: String(r.cache_hit) },
    metrics: { timer_server_handler_ns: r.latency_us * 1000 },
  };
}

const PDP_VERSION = '0.1.0';

export default async function decisionRoutes(app: FastifyInstance, opts: { db: Db }): Promise<void> {
  const { db } = opts;
  const auditors = app.requireRole('auditor', 'admin');

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/v1/decisions',
    {
      preHandler: auditors,
      schema: { tags: ['audit'], querystring: ListQuery, response: { 200: Page, ...errors } },
    },
    async (request) => {
      const q = request.query;
      return listDecisions(db, filterOf(q), { cursor: q.cursor, limit: q.limit ?? 100, order: q.order ?? 'desc' });
    },
  );

  // Registered before /v1/decisions/:id; find-my-way prefers the static segment anyway.
  app.get<{ Querystring: Static<typeof ExportQuery> }>(
    '/v1/decisions/export',
    {
      preHandler: auditors,
      schema: {
        tags: ['audit'],
        querystring: ExportQuery,
        response: { 200: { description: 'NDJSON, one OPA decision-log event per line', type: 'string' }, ...errors },
      },
    },
    async (request, reply) => {
      const filter = filterOf(request.query);
      const log = request.log;
      const lines = Readable.from(
        (async function* () {
          try {
            for await (const rec of scanDecisions(db, filter)) yield JSON.stringify(toOpaEvent(rec)) + '\n';
          } catch (err) {
            // Headers are gone already: end the stream with a last line saying it is incomplete.
            log.error({ err }, 'decision export failed');
            yield JSON.stringify({ code: 'internal', message: 'export interrupted' }) + '\n';
          }
        })(),
      );
      reply.header('content-type', 'application/x-ndjson; charset=utf-8');
      return reply.send(lines);
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/v1/decisions/:id',
    {
      preHandler: auditors,
      schema: { tags: ['audit'], params: IdParams, response: { 200: DecisionRecordSchema, ...errors } },
    },
    async (request) => {
      const rec = await getDecision(db, request.params.id);
      if (!rec) throw new ScopegateError('not_found', 'No decision with that id.');
      return rec;
    },
  );

  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof SessionQuery> }>(
    '/v1/sessions/:id',
    {
      preHandler: auditors,
      schema: { tags: ['audit'], params: IdParams, querystring: SessionQuery, response: { 200: SessionTimeline, ...errors } },
    },
    async (request) => {
      const page = await listDecisions(
        db,
        { session_id: request.params.id },
        { cursor: request.query.cursor, limit: request.query.limit ?? 1000, order: 'asc' },
      );
      if (page.items.length === 0 && request.query.cursor === undefined) {
        throw new ScopegateError('not_found', 'No decisions for that session.');
      }
      return { session_id: request.params.id, ...page };
    },
  );
}
