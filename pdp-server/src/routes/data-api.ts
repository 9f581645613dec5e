/**
 * OPA's Data API, so existing OPA clients (the OPA SDKs, Envoy's and others' OPA integrations)
 * can ask scopegate unchanged: `POST /v1/data/{path}` with `{"input": …}` answers
 * `{"result": …, "decision_id": …}`.
 *
 * The decision entrypoint (`scopegate/main/decision`) runs the full pipeline — the input is a
 * decide request with the agent's token, and the result is the decision object. Other
 * compiled entrypoints are evaluated with `input.subject` set only from a verified token
 * (a caller-supplied `subject` is dropped, so nobody can assert claims), and logged.
 * A path that is not an entrypoint is an undefined document: 200 without `result`, as OPA does.
 */
import { newDecisionId } from '../audit/decision-id.js';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { FastifyInstance } from 'fastify';
import { DecideRequest, ErrorBody, type SubjectClaims } from '../contract.js';
import { ScopegateError } from '../errors.js';
import { assertWithinLimits } from '../decision/input-limits.js';
import { DECISION_ENTRYPOINT, PACKAGE_ENTRYPOINT } from '../policy/opa-cli.js';

const checkDecideRequest = TypeCompiler.Compile(DecideRequest);

const DataRequest = Type.Object({ input: Type.Optional(Type.Unknown()) }, { additionalProperties: true });
const DataResponse = Type.Object(
  { result: Type.Optional(Type.Unknown()), decision_id: Type.String() },
  { additionalProperties: false },
);

export default async function dataApiRoutes(app: FastifyInstance) {
  const handler = async (path: string, input: unknown) => {
    assertWithinLimits(input);
    const entrypoint = path.replace(/^\/+|\/+$/g, '');
    if (entrypoint === DECISION_ENTRYPOINT) {
      if (!checkDecideRequest.Check(input)) {
        const first = checkDecideRequest.Errors(input).First();
        throw new ScopegateError('bad_request', `input is not a decide request: ${first ? `${first.path} ${first.message}` : 'invalid'}`);
      }
      const decision = await app.decisions.decide(input, { via: 'data-api' });
      return { result: decision, decision_id: decision.decision_id };
    }
    const active = app.policy.active;
    if (!active) throw new ScopegateError('policy_not_loaded');
    if (active.entrypoints.includes(entrypoint)) {
      return app.decisions.evaluateEntrypoint(entrypoint, await withVerifiedSubject(app, input));
    }
    // A rule inside the package (e.g. scopegate/main/allow): evaluate the package document
    // and walk the rest of the path, as OPA would resolve the reference.
    const rest = entrypoint.startsWith(`${PACKAGE_ENTRYPOINT}/`) ? entrypoint.slice(PACKAGE_ENTRYPOINT.length + 1).split('/') : undefined;
    if (rest && active.entrypoints.includes(PACKAGE_ENTRYPOINT)) {
      return app.decisions.evaluateEntrypoint(PACKAGE_ENTRYPOINT, await withVerifiedSubject(app, input), rest);
    }
    return { decision_id: newDecisionId() };
  };

  const schema = {
    tags: ['opa-compatible'],
    params: Type.Object({ '*': Type.String() }),
    response: { 200: DataResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 503: ErrorBody },
  };
  app.post<{ Params: { '*': string }; Body: { input?: unknown } }>(
    '/v1/data/*',
    { onRequest: app.requireRole('shim', 'admin'), schema: { ...schema, summary: 'OPA Data API: evaluate a policy path', body: DataRequest } },
    async (request) => handler(request.params['*'], request.body?.input),
  );
  app.get<{ Params: { '*': string } }>(
    '/v1/data/*',
    { onRequest: app.requireRole('shim', 'admin'), schema: { ...schema, summary: 'OPA Data API: evaluate a policy path without input' } },
    async (request) => handler(request.params['*'], undefined),
  );
}

async function withVerifiedSubject(app: FastifyInstance, input: unknown): Promise<Record<string, unknown>> {
  const base: Record<string, unknown> = input && typeof input === 'object' && !Array.isArray(input) ? { ...(input as object) } : {};
  delete base.subject;
  const token = base.token;
  delete base.token;
  if (typeof token === 'string') {
    const subject: SubjectClaims = await app.tokens.verify(token);
    if (app.revocations?.isRevoked(subject)) throw new ScopegateError('token_revoked');
    base.subject = subject;
  }
  return base;
}
