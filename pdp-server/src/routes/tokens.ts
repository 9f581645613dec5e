/**
 * Scoped tokens: `POST /v1/tokens` (admin) mints one; `GET /.well-known/jwks.json` publishes
 * the PDP's public signing keys so shims and services can verify tokens themselves.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorBody, MintTokenRequest, MintTokenResponse, type MintTokenRequest as MintTokenRequestT } from '../contract.js';

const Jwks = Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) });

export default async function tokenRoutes(app: FastifyInstance) {
  app.post<{ Body: MintTokenRequestT }>(
    '/v1/tokens',
    {
      onRequest: app.requireRole('admin'),
      schema: {
        tags: ['tokens'],
        summary: 'Mint a scoped, short-lived token',
        body: MintTokenRequest,
        response: { 201: MintTokenResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody },
      },
    },
    async (request, reply) => {
      const { token, jti, expires_at } = await app.tokens.mint(request.body);
      reply.code(201);
      return { token, jti, expires_at };
    },
  );

  app.get(
    '/.well-known/jwks.json',
    { schema: { tags: ['tokens'], summary: "The PDP's public signing keys (JWKS)", response: { 200: Jwks } } },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return app.tokens.jwks();
    },
  );
}
