/**
 * Decision-log rows in PostgreSQL's COPY text format (PostgreSQL docs, "COPY — File Formats
 * — Text Format"): tab-separated fields, `\N` for NULL, backslash escapes for backslash, tab,
 * newline and carriage return. One encoding serves three purposes: the spool journals these
 * lines, the writer streams the same bytes into `COPY decision_log FROM STDIN`, and replay
 * decodes them back into entries. Written by hand because it is four escapes and one split;
 * a CSV library would add work on the decision path and still not speak Postgres's escapes.
 */
import type { DecisionLogEntry } from './decision-log.js';

export const COPY_COLUMNS = [
  'time', 'decision_id', 'event', 'instance', 'subject', 'issuer', 'jti', 'chain', 'step', 'session_id', 'shim',
  'resource_kind', 'resource_name', 'request_summary', 'effect', 'reasons', 'code', 'policy_revision', 'latency_us',
  'cache_hit', 'approval_id',
] as const;

export const COPY_SQL = `COPY decision_log (${COPY_COLUMNS.join(', ')}) FROM STDIN`;

const SPECIAL = /[\\\t\n\r]/;
const SPECIAL_ALL = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const UNESCAPED: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

function field(v: unknown): string {
  if (v === undefined || v === null) return '\\N';
  const s = typeof v === 'string' ? v : String(v);
  // Most fields have nothing to escape: test first, so the common case costs one scan.
  return SPECIAL.test(s) ? s.replace(SPECIAL_ALL, (c) => ESCAPED[c]!) : s;
}

function unfield(s: string): string | null {
  if (s === '\\N') return null;
  return s.includes('\\') ? s.replace(/\\(.)/g, (_, c: string) => UNESCAPED[c] ?? c) : s;
}

/** A text[] literal with every element double-quoted (backslash and quote escaped). */
function arrayLiteral(items: unknown): string {
  if (!Array.isArray(items) || items.length === 0) return '{}';
  let out = '{';
  for (let i = 0; i < items.length; i++) out += (i ? ',"' : '"') + String(items[i]).replace(/[\\"]/g, (c) => '\\' + c) + '"';
  return out + '}';
}

/** The inverse of arrayLiteral (only the shape arrayLiteral writes is accepted). */
function parseArrayLiteral(s: string): string[] | undefined {
  if (s === '{}') return [];
  if (!s.startsWith('{"') || !s.endsWith('"}')) return undefined;
  const items: string[] = [];
  let cur = '';
  let i = 2;
  for (;;) {
    const c = s[i];
    if (c === undefined) return undefined;
    if (c === '\\') {
      cur += s[i + 1] ?? '';
      i += 2;
    } else if (c === '"') {
      items.push(cur);
      cur = '';
      if (s[i + 1] === '}') return i + 2 === s.length ? items : undefined;
      if (s[i + 1] !== ',' || s[i + 2] !== '"') return undefined;
      i += 3;
    } else {
      cur += c;
      i += 1;
    }
  }
}

/**
 * One row, newline-terminated, in COPY_COLUMNS order; `summaryJson` is the stored summary.
 * Joined from an array rather than by `+`: that builds one flat string instead of some forty
 * intermediate ones per decision (a kilobyte of young-generation garbage each).
 */
export function copyLine(e: DecisionLogEntry, instance: string, summaryJson: string | null): string {
  return (
    [
      field(e.time), field(e.decision_id), field(e.event ?? 'decision'), field(instance),
      field(e.subject), field(e.issuer), field(e.jti), field(e.chain),
      field(e.step), field(e.session_id), field(e.shim), field(e.resource_kind),
      field(e.resource_name), field(summaryJson), field(e.effect), field(arrayLiteral(e.reasons)),
      field(e.code), field(e.policy_revision), String(typeof e.latency_us === 'number' ? Math.round(e.latency_us) : 0),
      e.cache_hit === true ? 't' : 'f', `${field(e.approval_id)}\n`,
    ].join('\t')
  );
}

/** Decode one row written by copyLine (without its newline); undefined when it is not one. */
export function parseCopyLine(line: string): DecisionLogEntry | undefined {
  const f = line.split('\t');
  if (f.length !== COPY_COLUMNS.length) return undefined;
  const v = f.map(unfield);
  const [time, decisionId, event, , subject, issuer, jti, chain, step, sessionId, shim, kind, name, summary, effect, reasons, code, revision, latency, cacheHit, approvalId] = v;
  if (!time || !decisionId || !kind || !name || !effect || revision === null || revision === undefined) return undefined;
  if (effect !== 'allow' && effect !== 'deny' && effect !== 'approval_required') return undefined;
  const reasonList = parseArrayLiteral(reasons ?? '');
  if (!reasonList || !/^\d+$/.test(latency ?? '') || (cacheHit !== 't' && cacheHit !== 'f')) return undefined;
  let requestSummary: unknown = null;
  if (summary !== null && summary !== undefined) {
    try {
      requestSummary = JSON.parse(summary);
    } catch {
      return undefined;
    }
  }
  return {
    decision_id: decisionId,
    time,
    subject: subject ?? null,
    issuer: issuer ?? null,
    jti: jti ?? null,
    chain: chain ?? null,
    step: step ?? null,
    session_id: sessionId ?? null,
    shim: shim ?? null,
    resource_kind: kind,
    resource_name: name,
    request_summary: requestSummary,
    effect,
    reasons: reasonList,
    code: code ?? null,
    policy_revision: revision,
    latency_us: Number(latency),
    cache_hit: cacheHit === 't',
    approval_id: approvalId ?? null,
    ...(event && event !== 'decision' ? { event } : {}),
  };
}
