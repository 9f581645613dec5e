/**
 * The decision API: `POST /v1/decide` and `POST /v1/decide/batch` (shim credential).
 * Token and policy failures are answers (deny with a code), so these routes return 200
 * for every well-formed request; only malformed requests and bad credentials are errors.
 */
import type { FastifyInstance } from 'fastify';
import {
  CachedDecisionReport,
  DecideBatchRequest,
  DecideBatchResponse,
  DecideRequest,
  Decision,
  ErrorBody,
  type CachedDecisionReport as CachedDecisionReportT,
  type DecideBatchRequest as DecideBatchRequestT,
  type DecideRequest as DecideRequestT,
} from '../contract.js';
import { Type } from '@sinclair/typebox';
import { assertWithinLimits } from '../decision/input-limits.js';

export default async function decideRoutes(app: FastifyInstance) {
  const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 415: ErrorBody };

  app.post<{ Body: DecideRequestT }>(
    '/v1/decide',
    {
      onRequest: app.requireRole('shim', 'admin'),
      schema: {
        tags: ['decisions'],
        summary: 'Decide one request',
        body: DecideRequest,
        response: { 200: Decision, ...errors },
      },
    },
    async (request) => {
      assertWithinLimits(request.body.request);
      return app.decisions.decide(request.body, { via: 'decide' });
    },
  );

  app.post<{ Body: DecideBatchRequestT }>(
    '/v1/decide/batch',
    {
      onRequest: app.requireRole('shim', 'admin'),
      schema: {
        tags: ['decisions'],
        summary: 'Decide several requests; answers come back in the same order',
        body: DecideBatchRequest,
        response: { 200: DecideBatchResponse, ...errors },
      },
    },
    async (request) => {
      for (const r of request.body.requests) assertWithinLimits(r.request);
      const decisions = await Promise.all(request.body.requests.map((r) => app.decisions.decide(r, { via: 'batch' })));
      return { decisions };
    },
  );

  app.post<{ Body: CachedDecisionReportT }>(
    '/v1/decisions/cached',
    {
      onRequest: app.requireRole('shim', 'admin'),
      schema: {
        tags: ['decisions'],
        summary: 'Report calls a shim answered from its local cache of allow decisions, so the decision log has them too',
        body: CachedDecisionReport,
        response: { 200: Type.Object({ logged: Type.Integer() }), ...errors },
      },
    },
    async (request) => {
      for (const u of request.body.uses) assertWithinLimits(u.request);
      return { logged: await app.decisions.recordCachedUses(request.body) };
    },
  );
}
