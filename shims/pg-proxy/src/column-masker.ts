/**
 * Masking of query results by column, for the mask obligations of a decision.
 *
 * The rule (documented in shims/pg-proxy/README.md):
 *  1. A result column whose RowDescription origin (table OID + column number > 0) is a
 *     target column is masked with the target's method.
 *  2. When the statement is *tainted* — it references a target column, or `*` / a whole-row
 *     reference of a table that has one — every result column whose origin cannot be proven
 *     (table OID 0: expressions, casts that build new values, aggregates, set operations,
 *     sub-selects, row_to_json; column number 0: whole-row values) is masked too, because
 *     Postgres cannot tell us the value did not come from the target column.
 *  3. A tainted statement that writes (INSERT/UPDATE/DELETE/MERGE, SELECT INTO, CREATE TABLE
 *     AS, COPY FROM, data-modifying CTEs) is denied: the value would leave the result set,
 *     where masking cannot follow it (and RETURNING reports the written column's origin).
 *  4. Error and notice text produced while a tainted statement runs keeps only its SQLSTATE,
 *     because values appear in messages (`invalid input syntax for type integer: "…"`).
 *  5. Detector rules (`{detector, method}`) rewrite matches in every text value and message.
 * A masked value is a placeholder of the same type for text types, and NULL otherwise.
 */
import type { SqlStatement } from '../../../pdp-server/src/contract.js';
import { compileMask, maskText, maskValue, type CompiledMask, type MaskMethod, type MaskRuleInput } from '../../masking/src/mask-rules.js';
import type { ColumnCatalog } from './column-catalog.js';
import { ERROR_FIELDS } from './message-codes.js';
import { decodeDataRow, encodeDataRow, type FieldDescription, type NoticeFields } from './wire-codec.js';

const METHODS = new Set<MaskMethod>(['redact', 'last4', 'hash', 'null']);

/** Type OIDs whose text and binary forms are the same UTF-8 bytes (text, varchar, bpchar, name, unknown). */
const TEXT_TYPES = new Set([25, 1043, 1042, 19, 705]);

export interface MaskPlan {
  /** `schema.table.column` → method. */
  columns: Map<string, MaskMethod>;
  /** Detector rules, applied to all text. */
  text: CompiledMask | undefined;
  tainted: boolean;
}

export const NO_MASK: MaskPlan = Object.freeze({ columns: new Map(), text: undefined, tainted: false }) as MaskPlan;

export function isEmptyPlan(p: MaskPlan): boolean {
  return p.columns.size === 0 && !p.text && !p.tainted;
}

/**
 * Plans by mask rules and statement list identity. Decisions are immutable once answered (the
 * PDP client hands the same cached decision to every caller), and only deep-frozen statement
 * lists (the summariser's) are memoized, so an entry can never go stale.
 */
const planMemo = new WeakMap<readonly MaskRuleInput[], WeakMap<readonly SqlStatement[], MaskPlan>>();

function frozenStatements(statements: readonly SqlStatement[]): boolean {
  return Object.isFrozen(statements) && statements.every((s) => Object.isFrozen(s) && Object.isFrozen(s.columns));
}

/** Compile the mask obligations of one decision against the statements it allowed. */
export function planFor(statements: readonly SqlStatement[], rules: readonly MaskRuleInput[] | undefined): MaskPlan {
  if (!rules || rules.length === 0) return NO_MASK;
  if (!frozenStatements(statements)) return buildPlan(statements, rules);
  let byStatements = planMemo.get(rules);
  if (!byStatements) planMemo.set(rules, (byStatements = new WeakMap()));
  let plan = byStatements.get(statements);
  if (!plan) byStatements.set(statements, (plan = buildPlan(statements, rules)));
  return plan;
}

function buildPlan(statements: readonly SqlStatement[], rules: readonly MaskRuleInput[]): MaskPlan {
  const columns = new Map<string, MaskMethod>();
  const detectorRules: MaskRuleInput[] = [];
  for (const r of rules) {
    const method = (METHODS.has(r.method as MaskMethod) ? r.method : 'redact') as MaskMethod;
    if (r.target && r.target.split('.').length === 3) columns.set(r.target, method);
    else if (r.target) columns.set(r.target.includes('.') ? r.target : `*.*.${r.target}`, method);
    if (r.detector) detectorRules.push(r);
  }
  const referenced = new Set(statements.flatMap((s) => s.columns));
  let tainted = false;
  for (const target of columns.keys()) {
    const [schema, table, column] = target.split('.');
    const rel = `${schema}.${table}`;
    if (schema === '*') {
      // A bare column name: any reference to a column of that name, or any star.
      tainted ||= [...referenced].some((c) => c.endsWith(`.${column}`) || c.endsWith('.*'));
    } else tainted ||= referenced.has(target) || referenced.has(`${rel}.*`) || referenced.has(`?.${column}`);
  }
  const text = detectorRules.length ? compileMask(detectorRules) : undefined;
  return { columns, text, tainted };
}

export function mergePlans(a: MaskPlan, b: MaskPlan): MaskPlan {
  if (isEmptyPlan(a)) return b;
  if (isEmptyPlan(b)) return a;
  const columns = new Map(a.columns);
  for (const [k, v] of b.columns) if (!columns.has(k)) columns.set(k, v);
  const rules: MaskRuleInput[] = [];
  for (const t of [a.text, b.text]) if (t) for (const [d, m] of t.methodByDetector) rules.push({ detector: d, method: m });
  return { columns, text: rules.length ? compileMask(rules) : undefined, tainted: a.tainted || b.tainted };
}

/** Does this plan forbid running the statements at all (rule 3)? */
export function writesTaintedData(plan: MaskPlan, statements: readonly SqlStatement[]): boolean {
  if (!plan.tainted) return false;
  return statements.some(
    (s) => (s.writes?.length ?? 0) > 0 || (s.effects ?? []).some((e) => e === 'copy_from' || e === 'select_into' || e === 'data_modifying_cte'),
  );
}

/** Per result column: the method to apply, 'detect' for detector-only text, or undefined. */
export type FieldAction = MaskMethod | 'detect' | undefined;

function matchColumn(plan: MaskPlan, name: string): MaskMethod | undefined {
  const exact = plan.columns.get(name);
  if (exact) return exact;
  const bare = name.slice(name.lastIndexOf('.') + 1);
  return plan.columns.get(`*.*.${bare}`);
}

/** Whether a result column's mask action depends on its catalog name. */
function needsName(f: FieldDescription, plan: MaskPlan): boolean {
  return plan.columns.size > 0 && f.tableOid !== 0 && f.column > 0;
}

/** A catalog lookup that failed: the column's origin cannot be proved. */
const LOOKUP_FAILED = Symbol('lookup failed');

/**
 * The mask action of one result column. `name` is its catalog name when `needsName`: null
 * when the table has no such column, LOOKUP_FAILED when it could not be looked up (then the
 * column gets the plan's strictest method).
 */
function actionFor(f: FieldDescription, plan: MaskPlan, name: string | null | typeof LOOKUP_FAILED): FieldAction {
  let action: FieldAction;
  if (needsName(f, plan)) {
    if (name === LOOKUP_FAILED) action = strictestMethod(plan);
    else if (name !== null) action = matchColumn(plan, name);
  } else if (plan.tainted) action = strictestMethod(plan);
  if (action === undefined && plan.text) action = 'detect';
  return action;
}

/** The strictest column method of a plan: what a column of unprovable origin gets. */
function strictestMethod(plan: MaskPlan): MaskMethod {
  for (const m of plan.columns.values()) if (m === 'null') return 'null';
  return 'redact';
}

/**
 * `fieldActions` when every column name it needs is in the catalog's cache (the common case
 * after the first result of a table), without a promise; undefined when a lookup is needed.
 */
export function cachedFieldActions(fields: readonly FieldDescription[], plan: MaskPlan, catalog: ColumnCatalog): FieldAction[] | undefined {
  if (!catalog.cachedColumnName) return undefined;
  const out: FieldAction[] = [];
  for (const f of fields) {
    let name: string | null = null;
    if (needsName(f, plan)) {
      const cached = catalog.cachedColumnName(f.tableOid, f.column);
      if (cached === undefined) return undefined;
      name = cached;
    }
    out.push(actionFor(f, plan, name));
  }
  return out;
}

export async function fieldActions(fields: readonly FieldDescription[], plan: MaskPlan, catalog: ColumnCatalog): Promise<FieldAction[]> {
  const out: FieldAction[] = [];
  for (const f of fields) {
    let name: string | null | typeof LOOKUP_FAILED = null;
    if (needsName(f, plan)) {
      try {
        name = (await catalog.columnName(f.tableOid, f.column)) ?? null;
      } catch {
        // Cannot prove what the column is: mask it.
        name = LOOKUP_FAILED;
      }
    }
    out.push(actionFor(f, plan, name));
  }
  return out;
}

function maskOne(value: Buffer, action: Exclude<FieldAction, undefined>, field: FieldDescription, plan: MaskPlan): Buffer | null {
  const textual = TEXT_TYPES.has(field.typeOid) || (field.format === 0 && action === 'detect');
  if (action === 'detect') {
    if (!textual || !plan.text) return value;
    const s = value.toString('utf8');
    const masked = maskText(s, plan.text);
    return masked === s ? value : Buffer.from(masked, 'utf8');
  }
  if (action === 'null' || !TEXT_TYPES.has(field.typeOid)) return null;
  return Buffer.from(maskValue(value.toString('utf8'), action, field.name, plan.text?.hashKey ?? HASH_KEY), 'utf8');
}

const HASH_KEY = compileMask([]).hashKey;

/** Rewrite one DataRow body; returns the new message, or undefined when nothing changed. */
export function maskDataRow(body: Buffer, actions: readonly FieldAction[], fields: readonly FieldDescription[], plan: MaskPlan): Buffer | undefined {
  const values = decodeDataRow(body);
  let changed = false;
  const out = values.map((v, i) => {
    const action = actions[i];
    const field = fields[i];
    if (v === null || action === undefined || field === undefined) return v;
    const m = maskOne(v, action, field, plan);
    if (m !== v) changed = true;
    return m;
  });
  return changed ? encodeDataRow(out) : undefined;
}

const TEXT_FIELDS = new Set<string>([ERROR_FIELDS.message, ERROR_FIELDS.detail, ERROR_FIELDS.hint, ERROR_FIELDS.where, ERROR_FIELDS.internalQuery]);

/** Rules 4 and 5 for ErrorResponse / NoticeResponse fields. */
export function maskNoticeFields(fields: NoticeFields, plan: MaskPlan): NoticeFields {
  if (plan.tainted) {
    const keep = fields.filter(([c]) => c === ERROR_FIELDS.severity || c === ERROR_FIELDS.severityNonLocalized || c === ERROR_FIELDS.code);
    keep.push([ERROR_FIELDS.message, 'message withheld by scopegate: the statement reads masked columns']);
    return keep;
  }
  const text = plan.text;
  if (!text) return fields;
  return fields.map(([c, v]) => [c, TEXT_FIELDS.has(c) ? maskText(v, text) : v]);
}

/**
 * One row of COPY text format (§ COPY "Text Format": tab-separated, backslash escapes,
 * `\N` null, newline-terminated). Masked fields become `\N` or an escaped placeholder.
 */
export function maskCopyTextRow(row: Buffer, methods: ReadonlyArray<MaskMethod | undefined>, plan: MaskPlan, everyColumn: MaskMethod | undefined, labels: readonly string[] = []): Buffer {
  let s = row.toString('utf8');
  const nl = s.endsWith('\n') ? '\n' : '';
  if (nl) s = s.slice(0, -1);
  const parts = s.split('\t');
  const out = parts.map((p, i) => {
    const method = everyColumn ?? methods[i];
    if (method === undefined) return plan.text ? maskText(p, plan.text) : p;
    if (p === '\\N' || method === 'null') return '\\N';
    return maskValue(p, method, labels[i] ?? `column${i + 1}`, plan.text?.hashKey ?? HASH_KEY).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
  });
  return Buffer.from(out.join('\t') + nl, 'utf8');
}
