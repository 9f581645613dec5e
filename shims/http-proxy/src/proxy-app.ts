/**
 * The http-proxy as a Fastify app: every request is normalised, matched to a route,
 * decided by the PDP, then forwarded with the upstream credential (never the agent's
 * token) and its answer masked as the decision requires.
 *
 * Fail closed throughout: a missing token, an unparsable request, a PDP that cannot be
 * reached, an approval that does not come, or a response that cannot be masked all end
 * in an error with a stable code — the upstream is only contacted after an allow.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import { rootCertificates } from 'node:tls';
import { randomUUID } from 'node:crypto';
import { DECISION_ID_HEADER, type Decision, type DecideRequest } from '../../../pdp-server/src/contract.js';
import { PdpClient, type ApprovalStatus } from '../../pdp-client/src/index.js';
import { compileMask, maskChatCompletion, maskChatRequest, maskJson, maskText, SseMasker, type CompiledMask, type MaskRuleInput } from '../../masking/src/index.js';
import { PROXY_ERRORS, ProxyError, type ProxyErrorCode } from './errors.js';
import { checkQuery, normalizePath, splitTarget } from './path-normalize.js';
import { compileRoutes, matchRoute, type Route, type RouteConfig } from './routes.js';
import { httpRequest, llmOperation, llmRequest } from './decision-input.js';
import { guardChatCompletion, SseToolGuard, type ToolCallChecker } from './tool-call-guard.js';
import { UpstreamCall, type UpstreamHead } from './upstream-call.js';

/** What the proxy needs from a PDP client (PdpClient implements it). */
export interface Decider {
  decide(req: DecideRequest): Promise<Decision>;
  waitApproval(id: string, waitS: number): Promise<ApprovalStatus>;
  close?(): Promise<void>;
}

export interface HttpProxyOptions {
  routes: readonly RouteConfig[];
  /** PDP to ask; or pass `decider` (e.g. a shared PdpClient). */
  pdp?: { url: string; key: string; timeoutMs?: number; cacheMax?: number };
  decider?: Decider;
  /** Largest request body accepted (bytes). Default 2 MiB. */
  bodyLimitBytes?: number;
  /** Largest non-streamed response that will be buffered for masking (bytes). Default 16 MiB. */
  responseLimitBytes?: number;
  /** How long an approval_required request is held waiting for a human (seconds; 0 = answer 403 at once). */
  approvalWaitS?: number;
  /** Upstream headers/body timeout (ms). Default 60 s (model answers can be slow). */
  upstreamTimeoutMs?: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS; verification itself is never disabled. */
  upstreamCa?: string | readonly string[];
  /** Key for the `hash` mask method (stable across restarts when set). */
  maskHashKey?: Buffer;
  logger?: FastifyServerOptions['logger'];
}

declare module 'fastify' {
  interface FastifyRequest {
    scopegateBody?: Buffer;
  }
}

/** Hop-by-hop (RFC 9110 §7.6.1) and proxy-owned request headers, never forwarded as sent. */
const DROP_REQUEST_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'authorization', 'accept-encoding', 'expect',
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip', 'http2-settings',
]);
const DROP_RESPONSE_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length',
]);
const SESSION_HEADER = 'x-scopegate-session';

function sendError(reply: FastifyReply, code: ProxyErrorCode | string, extra: Record<string, string> = {}, status?: number): FastifyReply {
  const known = (PROXY_ERRORS as Record<string, { status: number; message: string }>)[code];
  const decisionId = extra.decision_id;
  if (decisionId) reply.header(DECISION_ID_HEADER, decisionId);
  return reply
    .code(status ?? known?.status ?? 403)
    .header('content-type', 'application/json; charset=utf-8')
    .header('cache-control', 'no-store')
    .send({ code, message: known?.message ?? 'The request was denied.', ...extra });
}

/** The decision's deny code mapped to an HTTP answer: token problems are 401, PDP trouble 503. */
function denyStatus(decision: Decision): { code: string; status: number } {
  const code = decision.code;
  if (code === 'pdp_unavailable') return { code, status: 503 };
  if (code?.startsWith('token_')) return { code, status: 401 };
  if (code === 'policy_not_loaded' || code === 'unavailable') return { code: 'pdp_unavailable', status: 503 };
  return { code: 'denied', status: 403 };
}

function bearer(req: FastifyRequest): string | undefined {
  const raw = req.raw.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 13 && name.toLowerCase() === 'authorization') count++;
  }
  if (count > 1) throw new ProxyError('header_invalid', 'more than one Authorization header');
  const value = req.headers.authorization;
  if (!value) return undefined;
  const m = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i.exec(value);
  if (!m) throw new ProxyError('header_invalid', 'Authorization must be a Bearer token');
  return m[1];
}

function isJsonType(ct: string | undefined): boolean {
  return ct !== undefined && /^application\/(?:[\w.+-]+\+)?json\b/i.test(ct);
}

export function createHttpProxy(options: HttpProxyOptions): FastifyInstance {
  const routes = compileRoutes(options.routes);
  const bodyLimit = options.bodyLimitBytes ?? 2 * 1024 * 1024;
  const responseLimit = options.responseLimitBytes ?? 16 * 1024 * 1024;
  const approvalWaitS = options.approvalWaitS ?? 0;
  const upstreamTimeoutMs = options.upstreamTimeoutMs ?? 60_000;
  if (!options.decider && !options.pdp) throw new Error('createHttpProxy needs `pdp` or `decider`');
  const ownsDecider = !options.decider;
  const decider: Decider = options.decider ?? new PdpClient({ ...options.pdp!, shim: 'http-proxy' });
  const ca = options.upstreamCa === undefined ? undefined : typeof options.upstreamCa === 'string' ? [options.upstreamCa] : [...options.upstreamCa];
  // rejectUnauthorized stays at its default (true): upstream TLS is always verified;
  // extra CAs are added to the system roots, not instead of them.
  const agent = new Agent({
    keepAliveTimeout: 30_000,
    connections: 128,
    ...(ca ? { connect: { ca: [...rootCertificates, ...ca] } } : {}),
  });

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit,
    // Keep the raw request target: routing and normalisation are ours, not the router's.
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, maxParamLength: 8192 },
    return503OnClosing: true,
  });

  // Every body is raw bytes; JSON is parsed by the proxy where it matters.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (err instanceof ProxyError) {
      request.log.info({ code: err.code, detail: err.detail }, 'request refused');
      return sendError(reply, err.code);
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, 'body_too_large');
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err.code === 'FST_ERR_BAD_URL') {
      return sendError(reply, 'bad_request');
    }
    if (err.statusCode && err.statusCode < 500) return sendError(reply, 'bad_request');
    request.log.error({ err }, 'proxy failure');
    return sendError(reply, 'internal');
  });
  app.setNotFoundHandler((_req, reply) => sendError(reply, 'route_not_found'));

  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/*', handler: (req, reply) => handle(req, reply) });
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/', handler: (req, reply) => handle(req, reply) });

  app.addHook('onClose', async () => {
    await agent.close();
    if (ownsDecider) await decider.close?.();
  });

  async function handle(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const target = splitTarget(req.raw.url ?? '');
    const host = typeof req.headers.host === 'string' ? req.headers.host : undefined;
    const matched = routeFor(host, target.path);
    if (!matched) return sendError(reply, 'route_not_found');
    const { route, rest } = matched;
    if (target.query !== undefined) checkQuery(target.query);
    const token = bearer(req);
    if (token === undefined) return sendError(reply, 'token_missing');

    const body = Buffer.isBuffer(req.body) ? req.body : undefined;
    const contentType = typeof req.headers['content-type'] === 'string' ? req.headers['content-type'] : undefined;
    let json: unknown;
    if (body && body.length > 0 && (isJsonType(contentType) || route.kind === 'llm')) {
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        throw new ProxyError('malformed_json');
      }
    }

    const method = req.method;
    const sessionId = typeof req.headers[SESSION_HEADER] === 'string' ? (req.headers[SESSION_HEADER] as string).slice(0, 256) : undefined;
    const context = { client_addr: req.ip, shim: 'http-proxy', ...(sessionId ? { session_id: sessionId } : {}) };
    let decideRequest: DecideRequest;
    let toolCheck: ToolCallChecker | undefined;
    if (route.kind === 'llm') {
      const operation = llmOperation(method, rest);
      if (!operation) return sendError(reply, 'llm_operation_unsupported');
      // Tool calls the model answers with are decided with the agent's own token.
      if (operation === 'chat') toolCheck = (name, args) => decideTool(token, context, name, args);
      decideRequest = { token, resource: { kind: 'llm', name: route.resource }, request: { llm: llmRequest(route.provider ?? route.resource, operation, json) }, context };
    } else {
      const http = httpRequest({ method, host: host?.replace(/:\d+$/, ''), path: rest, query: target.query, headers: req.headers, body, json });
      decideRequest = { token, resource: { kind: 'http', name: route.resource }, request: { http }, context };
    }

    let decision = await decider.decide(decideRequest);
    if (decision.effect === 'approval_required') {
      const settled = await awaitApproval(req, decision, decideRequest);
      if ('error' in settled) return sendError(reply, settled.error, settled.extra);
      decision = settled.decision;
    }
    if (decision.effect !== 'allow') {
      const { code, status } = denyStatus(decision);
      return sendError(reply, code, { decision_id: decision.decision_id }, status);
    }

    // Prompt-side masking: PII/secrets leave for the model only as the policy allows.
    let outBody = body;
    const requestMask = compiled(decision.obligations.mask_request);
    if (!requestMask.empty && json !== undefined && typeof json === 'object' && json !== null && !Array.isArray(json)) {
      const masked = route.kind === 'llm' ? maskChatRequest(json as Record<string, unknown>, requestMask) : (maskJson(json, requestMask) as Record<string, unknown>);
      outBody = Buffer.from(JSON.stringify(masked));
    }
    return forward(req, reply, route, rest, target.query, outBody, compiled(decision.obligations.mask), toolCheck, decision.decision_id);
  }

  /** A `tool` decision for one tool call in a model answer; a name the contract cannot carry is refused unasked. */
  function decideTool(token: string, context: DecideRequest['context'], name: string, args: unknown): Promise<Decision> {
    if (name.length === 0 || name.length > 256) {
      return Promise.resolve({ decision_id: randomUUID(), effect: 'deny', allow: false, reasons: ['tool name missing or too long'], obligations: {}, policy_revision: '', ttl_ms: 0, code: 'tool_name_invalid' });
    }
    return decider.decide({ token, resource: { kind: 'tool', name }, request: { tool: { name, arguments: args } }, ...(context ? { context } : {}) });
  }

  const maskOpts = options.maskHashKey ? { hashKey: options.maskHashKey } : {};
  const noMask = compileMask(undefined, maskOpts);
  // A decision served from the PDP client's cache is the same object each time, so its
  // compiled masks are kept with it instead of being rebuilt per request.
  const compiledMasks = new WeakMap<readonly MaskRuleInput[], CompiledMask>();
  function compiled(rules: readonly MaskRuleInput[] | undefined): CompiledMask {
    if (rules === undefined || rules.length === 0) return noMask;
    let mask = compiledMasks.get(rules);
    if (!mask) {
      mask = compileMask(rules, maskOpts);
      compiledMasks.set(rules, mask);
    }
    return mask;
  }

  // URL#origin is computed on every read; each route's is kept once.
  const origins = new Map<Route, string>();
  function originOf(route: Route): string {
    let origin = origins.get(route);
    if (origin === undefined) {
      origin = route.upstreamUrl.origin;
      origins.set(route, origin);
    }
    return origin;
  }

  // Normalising a path and matching it to a route is pure, and agents call the same few
  // paths over and over: remember recent answers (bounded; refused paths are not kept).
  const ROUTE_MEMO_MAX = 4096;
  const routeMemo = new Map<string, { route: Route; rest: string } | null>();
  function routeFor(host: string | undefined, rawPath: string): { route: Route; rest: string } | undefined {
    const key = `${host ?? ''} ${rawPath}`;
    const memo = routeMemo.get(key);
    if (memo !== undefined) return memo ?? undefined;
    const matched = matchRoute(routes, host, normalizePath(rawPath));
    const result = matched ? { route: matched.route, rest: matched.route.caseInsensitive ? normalizePath(matched.rest, { caseInsensitive: true }) : matched.rest } : undefined;
    if (routeMemo.size >= ROUTE_MEMO_MAX) routeMemo.clear();
    routeMemo.set(key, result ?? null);
    return result;
  }

  /**
   * Hold an approval_required request until a human decides or the wait runs out.
   *
   * The PDP long-poll (`GET /v1/approvals/:id?wait=N`) returns as soon as the approval
   * leaves `pending`. Approved: the request is decided again — the grant is bound to this
   * exact request and subject, so the new decision is the allow (and consumes a single-use
   * grant); whatever the PDP answers then is what is enforced. Denied: 403 approval_denied.
   * Expired, or still pending at the deadline: 403 approval_required. Every answer carries
   * the approval id. A client that hangs up stops the hold before anything is consumed.
   */
  async function awaitApproval(
    req: FastifyRequest,
    decision: Decision,
    decideRequest: DecideRequest,
  ): Promise<{ decision: Decision } | { error: ProxyErrorCode; extra: Record<string, string> }> {
    let current = decision;
    const extraOf = (d: Decision): Record<string, string> => ({
      decision_id: d.decision_id,
      ...(d.obligations.approval ? { approval_id: d.obligations.approval.id } : {}),
    });
    if (!current.obligations.approval || approvalWaitS <= 0) return { error: 'approval_required', extra: extraOf(current) };
    const deadline = Date.now() + approvalWaitS * 1000;
    const gone = () => req.raw.destroyed || req.raw.socket?.destroyed === true;
    // Bounded: each round lasts at least a second (long-poll, or a pause when it returns early).
    for (let round = 0; round <= approvalWaitS; round++) {
      const approval = current.obligations.approval;
      if (!approval) break;
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) break;
      const started = Date.now();
      const status = await decider.waitApproval(approval.id, left);
      if (gone()) return { error: 'approval_required', extra: extraOf(current) };
      if (status === 'denied') return { error: 'approval_denied', extra: extraOf(current) };
      if (status === 'expired') return { error: 'approval_required', extra: extraOf(current) };
      if (status === 'pending' && Date.now() < deadline - 250) {
        // The long-poll came back early without a verdict (the PDP restarted, a network
        // blip: the client reports failures as pending). Pause, then ask again.
        const elapsed = Date.now() - started;
        if (elapsed < 1000) await new Promise((r) => setTimeout(r, Math.min(1000 - elapsed, Math.max(0, deadline - Date.now()))));
        continue;
      }
      if (status === 'pending') break;
      // Approved: decide again; the PDP turns the grant into the allow.
      const again = await decider.decide(decideRequest);
      if (again.effect !== 'approval_required') return { decision: again };
      // Someone else used a single-use grant first, or it lapsed meanwhile: the PDP opened a
      // new approval; keep holding on that one while time remains.
      current = again;
    }
    return { error: 'approval_required', extra: extraOf(current) };
  }

  async function forward(
    req: FastifyRequest,
    reply: FastifyReply,
    route: Route,
    rest: string,
    query: string | undefined,
    body: Buffer | undefined,
    mask: CompiledMask,
    toolCheck: ToolCallChecker | undefined,
    decisionId: string,
  ): Promise<FastifyReply> {
    const headers: Record<string, string | string[]> = {};
    const connection = req.headers.connection;
    const connectionListed =
      connection === undefined
        ? undefined
        : new Set(
            String(connection)
              .split(',')
              .map((s) => s.trim().toLowerCase())
              .filter(Boolean),
          );
    for (const name in req.headers) {
      const value = req.headers[name];
      if (value === undefined || DROP_REQUEST_HEADERS.has(name) || connectionListed?.has(name)) continue;
      if (name.startsWith('x-scopegate-') || name === route.credentialHeader) continue;
      headers[name] = value;
    }
    // The upstream must answer uncompressed so the answer can be masked.
    headers['accept-encoding'] = 'identity';
    if (route.credential) headers[route.credentialHeader as string] = route.credential.value;
    if (body) headers['content-length'] = String(body.length);
    // The WHATWG URL parser (which used to build this target) encodes ' in a query; the
    // path and the rest of the query are already in their forwarded form.
    const q = query === undefined ? '' : `?${query.includes("'") ? query.replaceAll("'", '%27') : query}`;
    const joined = route.basePath + rest;
    const path = (joined.startsWith('/') ? joined : `/${joined}`) + q;
    const method = req.method as Dispatcher.HttpMethod;

    const call = new UpstreamCall();
    let head: UpstreamHead;
    try {
      head = await call.start(agent, {
        origin: originOf(route),
        path,
        method,
        headers,
        body: body && body.length > 0 ? body : null,
        headersTimeout: upstreamTimeoutMs,
        bodyTimeout: upstreamTimeoutMs,
      });
    } catch (err) {
      req.log.warn({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'upstream failed');
      return sendError(reply, err instanceof undiciErrors.HeadersTimeoutError ? 'upstream_timeout' : 'upstream_unavailable');
    }

    const resHeaders: Record<string, string | string[]> = {};
    for (const name in head.headers) {
      const value = head.headers[name];
      if (value === undefined || DROP_RESPONSE_HEADERS.has(name)) continue;
      resHeaders[name] = value;
    }
    // Set last: an upstream cannot forge or hide the id of the decision that let it answer.
    resHeaders[DECISION_ID_HEADER] = decisionId;
    const contentType = typeof head.headers['content-type'] === 'string' ? head.headers['content-type'] : undefined;
    const encoding = head.headers['content-encoding'];

    // Tool calls are only looked for in successful chat answers.
    const guard = head.statusCode === 200 ? toolCheck : undefined;
    const isSse = contentType !== undefined && /^text\/event-stream\b/i.test(contentType);
    const passThrough = mask.empty && (!guard || !(isSse || isJsonType(contentType)));
    if (passThrough || method === 'HEAD' || head.statusCode === 204 || head.statusCode === 304) {
      const len = head.headers['content-length'];
      if (typeof len === 'string') resHeaders['content-length'] = len;
      // Nothing to rewrite: the answer goes to the client as it comes, without Fastify's
      // send pipeline. A body that is already complete (a small answer arrives with its
      // headers) leaves in the same write as the status line.
      const res = startResponse(reply, call, head.statusCode, resHeaders);
      if (!res) return sendError(reply, 'internal');
      if (call.complete) res.end(call.takeBody());
      else relay(req, res, call, (chunk) => chunk, undefined);
      return reply;
    }
    if (encoding !== undefined && encoding !== 'identity') {
      call.abort(new Error('unmaskable encoding'));
      return sendError(reply, 'response_unmaskable');
    }
    if (isSse) {
      // The guard sees the model's real tool arguments (the policy decides on them); the
      // masker after it rewrites what the agent receives. Both run in the data callback,
      // so an event that needs no decision is written to the client in the same tick.
      const toolGuard = guard ? new SseToolGuard(guard) : undefined;
      const masker = mask.empty ? undefined : new SseMasker(mask);
      const afterGuard = (text: string): string => (masker ? masker.write(text) : text);
      const stage = (chunk: Buffer): string | Buffer | Promise<string> => {
        if (!toolGuard) return masker ? masker.write(chunk) : chunk;
        const out = toolGuard.write(chunk);
        return typeof out === 'string' ? afterGuard(out) : out.then(afterGuard);
      };
      const finish = (): string | Promise<string> => {
        const out = toolGuard ? toolGuard.end() : '';
        const tail = (text: string): string => (masker ? masker.write(text) + masker.end() : text);
        return typeof out === 'string' ? tail(out) : out.then(tail);
      };
      resHeaders['cache-control'] = resHeaders['cache-control'] ?? 'no-cache';
      const res = startResponse(reply, call, head.statusCode, resHeaders);
      if (!res) return sendError(reply, 'internal');
      relay(req, res, call, stage, finish);
      return reply;
    }
    const text = await readLimited(call, responseLimit);
    if (text === undefined) return sendError(reply, 'response_too_large');
    let payload: string;
    if (isJsonType(contentType)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return sendError(reply, 'response_unmaskable');
      }
      if (guard) parsed = await guardChatCompletion(parsed, guard);
      // Chat-completion shapes get their tool arguments parsed; anything else is plain JSON masking.
      payload = JSON.stringify(maskChatCompletion(parsed, mask));
    } else if (!contentType || /^text\/|^application\/(?:xml|x-www-form-urlencoded|javascript)\b/i.test(contentType)) {
      payload = maskText(text, mask);
    } else {
      // Binary or unknown content cannot be masked: fail closed rather than pass it unmasked.
      return sendError(reply, 'response_unmaskable');
    }
    delete resHeaders.etag;
    delete resHeaders['content-md5'];
    return reply.code(head.statusCode).headers(resHeaders).send(payload);
  }

  return app;
}

/**
 * Take the response over from Fastify and write the status line and headers. A header
 * value Node refuses leaves nothing sent: the caller answers with an error instead.
 */
function startResponse(reply: FastifyReply, call: UpstreamCall, status: number, headers: Record<string, string | string[]>): ServerResponse | undefined {
  const res = reply.raw;
  try {
    res.writeHead(status, headers);
  } catch (err) {
    reply.log.warn({ code: (err as { code?: string }).code }, 'upstream answer has headers that cannot be relayed');
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    call.abort(err as Error);
    return undefined;
  }
  reply.hijack();
  return res;
}

/**
 * Relay an upstream body to the client through `stage` (identity, or the SSE guard and
 * masker), in order, with backpressure both ways: the upstream is paused while the client
 * is not draining or while a stage is waiting for a decision. A client that goes away
 * stops the upstream; a stage or upstream failure after the headers cuts the response
 * (the status is already sent, so cutting is the only way to fail closed).
 */
function relay(
  req: FastifyRequest,
  res: ServerResponse,
  call: UpstreamCall,
  stage: (chunk: Buffer) => string | Buffer | Promise<string>,
  finish: (() => string | Promise<string>) | undefined,
): void {
  const queue: Buffer[] = [];
  let busy = false;
  let draining = false;
  let upstreamDone = false;
  let ending = false;
  let closed = false;

  const flow = (): boolean => {
    const go = !busy && !draining;
    if (go) call.resume();
    return go;
  };
  const fail = (err: Error, what: string): void => {
    if (closed) return;
    closed = true;
    req.log.warn({ code: (err as { code?: string }).code ?? 'stream_error' }, what);
    call.abort(err);
    res.destroy();
  };
  const emit = (out: string | Buffer): void => {
    if (out.length === 0 || closed) return;
    if (!res.write(out) && !draining) {
      draining = true;
      res.once('drain', () => {
        draining = false;
        flow();
        pump();
      });
    }
  };
  const settle = (result: string | Buffer | Promise<string>, then: () => void): boolean => {
    if (typeof result === 'string' || Buffer.isBuffer(result)) {
      emit(result);
      return true;
    }
    busy = true;
    call.pause();
    result.then(
      (out) => {
        busy = false;
        emit(out);
        then();
      },
      (err: Error) => fail(err, 'SSE masking stopped the stream'),
    );
    return false;
  };
  function pump(): void {
    while (!busy && !closed) {
      const chunk = queue.shift();
      if (chunk === undefined) break;
      try {
        if (!settle(stage(chunk), () => (flow(), pump()))) return;
      } catch (err) {
        fail(err as Error, 'SSE masking stopped the stream');
        return;
      }
    }
    if (busy || closed || ending || !upstreamDone || queue.length > 0) return;
    ending = true;
    const done = (): void => {
      if (closed) return;
      closed = true;
      res.end();
    };
    if (!finish) return done();
    try {
      if (settle(finish(), done)) done();
    } catch (err) {
      fail(err as Error, 'SSE masking stopped the stream');
    }
  }

  res.once('close', () => {
    if (!res.writableFinished) {
      closed = true;
      call.abort(new Error('client closed the connection'));
    }
  });
  call.attach({
    data(chunk) {
      queue.push(chunk);
      if (!busy) pump();
      return !busy && !draining;
    },
    end() {
      upstreamDone = true;
      if (!busy) pump();
    },
    error(err) {
      fail(err, 'upstream stream failed');
    },
  });
}

/** Read a body as UTF-8 up to `limit` bytes; undefined (and the exchange aborted) past it. */
function readLimited(call: UpstreamCall, limit: number): Promise<string | undefined> {
  if (call.complete) return Promise.resolve(call.bufferedBytes > limit ? undefined : call.takeBody().toString('utf8'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    call.attach({
      data(chunk) {
        if (over) return true;
        size += chunk.length;
        if (size > limit) {
          over = true;
          call.abort(new Error('response too large'));
          resolve(undefined);
          return true;
        }
        chunks.push(chunk);
        return true;
      },
      end() {
        if (!over) resolve(Buffer.concat(chunks, size).toString('utf8'));
      },
      error(err) {
        if (!over) reject(err);
      },
    });
  });
}
