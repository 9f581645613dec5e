/**
 * What of a request goes into the decision log. Never raw values that may carry secrets or
 * PII: SQL is already a structural summary (no literals); for HTTP only the method, host,
 * path and the *names* of query parameters and body fields (no
 * values, and no hashes of them: a hash of a short value such as an SSN is reversible); for LLM calls the provider,
 * model and message sizes, never the text; for tools the argument names.
 */
import type { DecisionRequestBody } from '../contract.js';

export function summariseRequest(request: DecisionRequestBody): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (request.sql) {
    out.sql = {
      statements: request.sql.statements.map((s) => ({
        command: s.command,
        relations: s.relations,
        columns: s.columns,
        functions: s.functions,
        ...(s.effects?.length ? { effects: s.effects } : {}),
        ...(s.writes?.length ? { writes: s.writes } : {}),
        ...(s.filter_columns?.length ? { filter_columns: s.filter_columns } : {}),
        ...(s.expression_columns?.length ? { expression_columns: s.expression_columns } : {}),
      })),
      ...(request.sql.fingerprint ? { fingerprint: request.sql.fingerprint } : {}),
    };
  }
  if (request.http) {
    const h = request.http;
    out.http = {
      method: h.method,
      ...(h.host ? { host: h.host } : {}),
      path: h.path,
      ...(h.query ? { query_keys: Object.keys(h.query).sort() } : {}),
      ...(h.body !== undefined ? { body_keys: keysOf(h.body) } : {}),
    };
  }
  if (request.llm) {
    const l = request.llm;
    out.llm = {
      provider: l.provider,
      model: l.model,
      ...(l.operation ? { operation: l.operation } : {}),
      messages: l.messages.map((m) => ({ role: m.role, chars: m.content.length })),
      ...(l.tools ? { tools: l.tools } : {}),
      ...(l.max_tokens !== undefined ? { max_tokens: l.max_tokens } : {}),
    };
  }
  if (request.tool) {
    const t = request.tool;
    out.tool = {
      name: t.name,
      ...(t.action ? { action: t.action } : {}),
      ...(t.arguments !== undefined ? { argument_keys: keysOf(t.arguments) } : {}),
    };
  }
  return out;
}

function keysOf(v: unknown): string[] {
  return v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v).sort().slice(0, 100) : [];
}
