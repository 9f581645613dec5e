/**
 * Turning an HTTP request into the `request` part of a decision: `http` for REST and
 * vector routes, `llm` for OpenAI-compatible model endpoints. Everything is bounded to the
 * contract's LIMITS; what cannot be represented whole for the policy is refused rather
 * than silently cut, so a long prompt cannot hide an injection past a truncation point.
 */
import { LIMITS, type HttpRequest, type LlmRequest } from '../../../pdp-server/src/contract.js';
import { ProxyError } from './errors.js';

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Request headers shown to the policy (never credentials or cookies). */
export const DECISION_HEADERS = ['content-type', 'content-length', 'accept', 'user-agent', 'x-request-id'] as const;
const SCALAR_CHARS = 1024;
const MAX_KEYS = 200;

export function queryRecord(query: string | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (!query) return out;
  let n = 0;
  for (const [k, v] of new URLSearchParams(query)) {
    if (++n > LIMITS.arrayItems) throw new ProxyError('query_invalid', 'too many query parameters');
    if (k.length > LIMITS.stringChars || v.length > LIMITS.stringChars) throw new ProxyError('query_invalid', 'query parameter too long');
    const prev = Object.prototype.hasOwnProperty.call(out, k) ? out[k] : undefined;
    const value = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** A JSON body summary: size, top-level keys, top-level scalar values (strings cut to 1 KiB). */
export function summarizeBody(body: Buffer | undefined, json: unknown, contentType: string | undefined): unknown {
  if (!body || body.length === 0) return undefined;
  const summary: Json = { size: body.length, content_type: contentType ?? '' };
  if (json === undefined) return summary;
  if (Array.isArray(json)) {
    summary.array_length = json.length;
    return summary;
  }
  if (!isObj(json)) {
    summary.value = typeof json === 'string' ? json.slice(0, SCALAR_CHARS) : json;
    return summary;
  }
  const keys = Object.keys(json).slice(0, MAX_KEYS);
  const fields: Json = {};
  for (const k of keys) {
    const v = json[k];
    if (typeof v === 'string') fields[k] = v.slice(0, SCALAR_CHARS);
    else if (typeof v === 'number' || typeof v === 'boolean' || v === null) fields[k] = v;
  }
  summary.keys = keys;
  summary.fields = fields;
  return summary;
}

export function httpRequest(args: {
  method: string;
  host: string | undefined;
  path: string;
  query: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer | undefined;
  json: unknown;
}): HttpRequest {
  const headers: Record<string, string> = {};
  for (const name of DECISION_HEADERS) {
    const v = args.headers[name];
    if (typeof v === 'string') headers[name] = v.slice(0, SCALAR_CHARS);
  }
  const contentType = typeof args.headers['content-type'] === 'string' ? args.headers['content-type'] : undefined;
  const body = summarizeBody(args.body, args.json, contentType);
  return {
    method: args.method,
    ...(args.host !== undefined ? { host: args.host.slice(0, 256) } : {}),
    path: args.path,
    query: queryRecord(args.query),
    headers,
    ...(body !== undefined ? { body } : {}),
  };
}

/** OpenAI-compatible operation from the path relative to the route. */
export function llmOperation(method: string, rest: string): string | undefined {
  const p = rest.replace(/\/$/, '');
  if (method === 'POST' && p.endsWith('/chat/completions')) return 'chat';
  if (method === 'POST' && p.endsWith('/embeddings')) return 'embeddings';
  if (method === 'POST' && p.endsWith('/completions')) return 'completions';
  if (method === 'GET' && /\/models(\/[^/]+)?$/.test(p)) return 'models';
  return undefined;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (isObj(part) && typeof part.text === 'string' ? part.text : typeof part === 'string' ? part : ''))
      .filter((t) => t !== '')
      .join('\n');
  }
  return '';
}

/** Split text into contract-sized pieces so the policy sees every character. */
function pieces(role: string, text: string, out: LlmRequest['messages']): void {
  if (text === '') return;
  for (let i = 0; i < text.length; i += LIMITS.stringChars) {
    out.push({ role: role.slice(0, 32), content: text.slice(i, i + LIMITS.stringChars) });
  }
  if (out.length > LIMITS.arrayItems) throw new ProxyError('prompt_too_large', 'too many messages to check');
}

export function llmRequest(provider: string, operation: string, body: unknown): LlmRequest {
  if (operation === 'models') return { provider, model: '*', operation, messages: [] };
  if (!isObj(body) || typeof body.model !== 'string' || body.model === '') throw new ProxyError('llm_request_invalid');
  const messages: LlmRequest['messages'] = [];
  if (Array.isArray(body.messages)) {
    for (const m of body.messages) {
      if (!isObj(m)) continue;
      const role = typeof m.role === 'string' ? m.role : 'user';
      pieces(role, textOf(m.content), messages);
      // Arguments of earlier tool calls are prompt text too.
      if (Array.isArray(m.tool_calls)) {
        for (const tc of m.tool_calls) {
          if (isObj(tc) && isObj(tc.function) && typeof tc.function.arguments === 'string') pieces(role, tc.function.arguments, messages);
        }
      }
    }
  }
  for (const key of ['input', 'prompt'] as const) {
    const v = body[key];
    if (typeof v === 'string') pieces('user', v, messages);
    else if (Array.isArray(v)) for (const s of v) if (typeof s === 'string') pieces('user', s, messages);
  }
  const tools: string[] = [];
  for (const t of Array.isArray(body.tools) ? body.tools : []) {
    if (isObj(t) && isObj(t.function) && typeof t.function.name === 'string') tools.push(t.function.name.slice(0, 256));
  }
  for (const f of Array.isArray(body.functions) ? body.functions : []) {
    if (isObj(f) && typeof f.name === 'string') tools.push(f.name.slice(0, 256));
  }
  if (tools.length > LIMITS.arrayItems) throw new ProxyError('prompt_too_large', 'too many tools');
  const maxTokens = [body.max_tokens, body.max_completion_tokens].find((v): v is number => Number.isInteger(v) && (v as number) >= 0);
  const estimated = Math.ceil(messages.reduce((n, m) => n + m.content.length, 0) / 4);
  return {
    provider,
    model: body.model.slice(0, 256),
    operation,
    messages,
    tools,
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    estimated_tokens: estimated,
  };
}
