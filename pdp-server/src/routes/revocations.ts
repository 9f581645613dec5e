/**
 * Revocation API (admin only):
 *   POST /v1/tokens/:jti/revoke     revoke one token by its jti
 *   POST /v1/subjects/:sub/revoke   revoke every token of a subject issued before now
 *   GET  /v1/revocations            unexpired revocations, newest first
 * A revocation is committed to the store before the answer, and is in force on this replica
 * when the answer leaves; other replicas follow within a pub/sub round trip (see
 * docs/revocation-and-cache.md).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorBody } from '../contract.js';
import type { RevocationService } from '../revocation/revocation-service.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const RevocationSchema = Type.Object(
  {
    id: Type.String(),
    jti: Nullable(Type.String()),
    sub: Nullable(Type.String()),
    issued_before: Nullable(Type.String({ format: 'date-time' })),
    reason: Nullable(Type.String()),
    created_at: Type.String({ format: 'date-time' }),
    expires_at: Nullable(Type.String({ format: 'date-time' })),
    by: Type.String(),
  },
  { additionalProperties: false },
);

const RevokeTokenParams = Type.Object({ jti: Type.String({ minLength: 1, maxLength: 256 }) });
const RevokeSubjectParams = Type.Object({ sub: Type.String({ minLength: 1, maxLength: 256 }) });
const RevokeTokenBody = Type.Object(
  {
    reason: Type.Optional(Type.String({ maxLength: 1024 })),
    /** The token's exp (unix seconds), when known: the revocation is pruned after it. */
    exp: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
const RevokeSubjectBody = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: 1024 })) },
  { additionalProperties: false },
);
const RevocationList = Type.Object({ revocations: Type.Array(RevocationSchema) }, { additionalProperties: false });

/** The body is optional: a bare POST means "no reason, no known expiry". */
async function bodyDefaultsToEmpty(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 500: ErrorBody, 503: ErrorBody };

export default async function revocationRoutes(app: FastifyInstance, opts: { revocations: RevocationService }) {
  const { revocations } = opts;
  const by = (principal: { name: string } | undefined) => principal?.name ?? 'admin';

  app.post<{ Params: Static<typeof RevokeTokenParams>; Body: Static<typeof RevokeTokenBody> }>(
    '/v1/tokens/:jti/revoke',
    {
      preValidation: bodyDefaultsToEmpty,
      onRequest: app.requireRole('admin'),
      schema: {
        tags: ['revocations'],
        summary: 'Revoke one token (by jti) on every replica',
        params: RevokeTokenParams,
        body: RevokeTokenBody,
        response: { 201: RevocationSchema, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const r = await revocations.revokeToken(request.params.jti, {
        by: by(request.principal),
        ...(body.reason !== undefined ? { reason: body.reason } : {}),
        ...(body.exp !== undefined ? { exp: body.exp } : {}),
      });
      reply.code(201);
      return r;
    },
  );

  app.post<{ Params: Static<typeof RevokeSubjectParams>; Body: Static<typeof RevokeSubjectBody> }>(
    '/v1/subjects/:sub/revoke',
    {
      preValidation: bodyDefaultsToEmpty,
      onRequest: app.requireRole('admin'),
      schema: {
        tags: ['revocations'],
        summary: 'Revoke every token of a subject issued before now, on every replica',
        params: RevokeSubjectParams,
        body: RevokeSubjectBody,
        response: { 201: RevocationSchema, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const r = await revocations.revokeSubject(request.params.sub, {
        by: by(request.principal),
        ...(body.reason !== undefined ? { reason: body.reason } : {}),
      });
      reply.code(201);
      return r;
    },
  );

  app.get(
    '/v1/revocations',
    {
      onRequest: app.requireRole('admin'),
      schema: {
        tags: ['revocations'],
        summary: 'Unexpired revocations, newest first',
        response: { 200: RevocationList, 401: ErrorBody, 403: ErrorBody, 500: ErrorBody },
      },
    },
    async () => ({ revocations: await revocations.list() }),
  );

  // Open event streams, ended when the server closes (they would otherwise hold it open).
  const streams = new Set<() => void>();
  app.addHook('onClose', async () => {
    for (const end of streams) end();
  });

  app.get(
    '/v1/revocations/stream',
    {
      onRequest: app.requireRole('shim', 'admin'),
      schema: {
        tags: ['revocations'],
        summary: 'Server-Sent Events: one `revocation` event per revocation this replica learns of, for shims to drop cached allows',
        produces: ['text/event-stream'],
      },
    },
    (request, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      // A first event tells the client the feed is live: what it cached before is now stale-safe.
      res.write('event: ready\ndata: {}\n\n');
      const unsubscribe = revocations.onRevocation((r) => {
        res.write(`event: revocation\ndata: ${JSON.stringify({ id: r.id, jti: r.jti, sub: r.sub, issued_before: r.issued_before })}\n\n`);
      });
      // Comments keep idle connections (and proxies between) from timing out.
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      heartbeat.unref();
      const end = () => {
        if (!streams.delete(end)) return;
        clearInterval(heartbeat);
        unsubscribe();
        res.end();
      };
      streams.add(end);
      request.raw.on('close', end);
    },
  );
}
