/**
 * Statement summaries for policy decisions, built from the libpg-query AST (the real
 * Postgres parser, v17 grammar).
 *
 * The rule is: report more, never less. A name that could mean two things is reported as
 * both; a column that cannot be attributed to one relation is attributed to every relation
 * it could belong to; a statement whose effect hides in another statement (EXPLAIN ANALYZE,
 * PREPARE/EXECUTE, cursors, data-modifying CTEs, SELECT INTO, CREATE TABLE AS) is reported
 * as that inner statement too. Anything that does not parse, or that the summary cannot
 * describe (EXECUTE/FETCH of something this session never prepared or declared, a change of
 * the pinned search_path, a change of role), is refused here, before any PDP call.
 *
 * Name resolution assumes the search_path the proxy pins (`public`): unqualified relations
 * are `public.<name>`, except `pg_*` names, which Postgres may resolve in pg_catalog first
 * (pg_catalog is searched implicitly before the path) and so are reported in both schemas.
 */
import { hash } from 'node:crypto';
import { loadModule, parseSync } from 'libpg-query';
import type { SqlStatement } from '../../../pdp-server/src/contract.js';

export const PINNED_SCHEMA = 'public';

/** What a session remembers between statements: SQL- and protocol-level prepared statements and cursors share it. */
export interface SessionObjects {
  prepared: Map<string, SqlStatement[]>;
  cursors: Map<string, SqlStatement[]>;
}

export function newSessionObjects(): SessionObjects {
  return { prepared: new Map(), cursors: new Map() };
}

export type SummaryResult =
  | {
      ok: true;
      statements: SqlStatement[];
      /** Shape of the query (AST without constants and positions), stable across parameter values. */
      fingerprint: string;
      /** Changes to the session's objects to apply once the query is forwarded. */
      apply: (objs: SessionObjects) => void;
    }
  | { ok: false; reason: string };

let loaded: Promise<void> | undefined;
/** libpg-query is WebAssembly; it must be loaded once before `summarize` is called. */
export function loadSqlParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

type Node = Record<string, unknown>;

class Undescribable extends Error {}

/** Settings that a session may not change, because the summary depends on them or identity rides on them. */
const PINNED_SETTINGS = new Set(['search_path', 'role', 'session_authorization', 'session_replication_role']);

/**
 * Postgres's built-in set-returning functions: called in a select list, their arguments
 * decide how many rows come back, so those are filter positions too. (A user-defined
 * set-returning function is not known here; see the pg-proxy README.)
 */
const SET_RETURNING_FUNCTIONS = new Set([
  'generate_series',
  'generate_subscripts',
  'unnest',
  'regexp_matches',
  'regexp_split_to_table',
  'string_to_table',
  'json_array_elements',
  'json_array_elements_text',
  'jsonb_array_elements',
  'jsonb_array_elements_text',
  'json_each',
  'json_each_text',
  'jsonb_each',
  'jsonb_each_text',
  'json_object_keys',
  'jsonb_object_keys',
  'json_populate_recordset',
  'jsonb_populate_recordset',
  'json_to_recordset',
  'jsonb_to_recordset',
  'jsonb_path_query',
  'jsonb_path_query_tz',
  'ts_stat',
  'ts_debug',
  'ts_parse',
  'ts_token_type',
]);

/**
 * Functions that cannot fail on the value of a text or whole-row argument, so a masked
 * column may pass through them in a select list (the result is masked like any value without
 * a column of origin). Anything else computed from a masked column could fail on its value.
 */
const OUTPUT_SAFE_FUNCTIONS = new Set([
  'upper', 'lower', 'initcap', 'concat', 'concat_ws', 'row_to_json', 'to_json', 'to_jsonb',
  'json_agg', 'jsonb_agg', 'array_agg', 'string_agg', 'count', 'min', 'max',
]);

/** Casts that cannot fail: to a text type. */
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name']);

/** Functions that change settings or run SQL text the summary never sees. Refused locally; the policy may refuse more. */
const SETTING_FUNCTIONS = new Set(['set_config']);

interface Frame {
  /** alias or relation name → qualified relation; null value = derived table/CTE/function (no base relation). */
  sources: Map<string, string | null>;
  /** Base relations in this frame, for unqualified column attribution. */
  relations: string[];
  /** Derived sources (subquery, CTE, function) → every base column they read. */
  derived: Map<string, ReadonlySet<string>>;
  /** Aliased joins (`(a JOIN b) AS j`) → the relations joined: `j.x` is column x of one of them. */
  joins: Map<string, string[]>;
}

function newFrame(): Frame {
  return { sources: new Map(), relations: [], derived: new Map(), joins: new Map() };
}

interface Scope {
  ctes: Set<string>;
  frames: Frame[];
}

class StatementCollector {
  readonly relations = new Set<string>();
  readonly columns = new Set<string>();
  readonly functions = new Set<string>();
  readonly effects = new Set<string>();
  readonly writes = new Set<string>();
  /** Columns referenced outside any frame (DDL, RETURNING without frame…): attributed to every relation at the end. */
  readonly looseColumns = new Set<string>();
  /** Extra statements implied by this one (nested DML, the table created by SELECT INTO…). */
  readonly extra: SqlStatement[] = [];
  /**
   * Columns that decide which rows come back, how many or in what order: referenced in
   * WHERE, JOIN conditions, GROUP BY, HAVING, window and ORDER BY clauses, DISTINCT ON,
   * LIMIT/OFFSET or FROM-clause expressions, here or in any sub-select there. A reference
   * through a derived table or CTE counts as every base column that source reads. A masked
   * column used here could be read back by asking (`WHERE ssn LIKE '1%'`), so the policy
   * sees them apart from the columns read.
   */
  readonly filterColumns = new Set<string>();
  readonly looseFilterColumns = new Set<string>();
  /** Above zero while the walk is inside such a position. */
  filterDepth = 0;
  /**
   * Columns computed on in a select list by anything that could fail on their value (see
   * Walker.output): `1/(CASE WHEN ssn LIKE '1%' THEN 0 ELSE 1 END)` or
   * `div(1, position('1' in ssn))` fail or not depending on a masked value, and whether a
   * statement failed shows even when its error text is withheld.
   */
  readonly expressionColumns = new Set<string>();
  readonly looseExpressionColumns = new Set<string>();
  /** Above zero while the walk is inside such an expression. */
  expressionDepth = 0;
  /** Open captures (a derived table being walked): each column added is added to them too. */
  readonly captures: Array<Set<string>> = [];

  constructor(
    readonly command: string,
    readonly session: SessionObjects,
  ) {}

  addColumn(name: string): void {
    this.columns.add(name);
    if (this.filterDepth > 0) this.filterColumns.add(name);
    if (this.expressionDepth > 0) this.expressionColumns.add(name);
    for (const c of this.captures) c.add(name);
  }

  addLooseColumn(col: string): void {
    this.looseColumns.add(col);
    if (this.filterDepth > 0) this.looseFilterColumns.add(col);
    if (this.expressionDepth > 0) this.looseExpressionColumns.add(col);
  }

  /** A filter or expression reference to a derived source: every base column the source reads. */
  addDerivedReads(reads: ReadonlySet<string>): void {
    if (this.filterDepth > 0) for (const col of reads) this.filterColumns.add(col);
    if (this.expressionDepth > 0) for (const col of reads) this.expressionColumns.add(col);
  }

  finish(): SqlStatement[] {
    const attribute = (loose: Set<string>, into: Set<string>) => {
      for (const col of loose) {
        if (this.relations.size === 0) into.add(`?.${col}`);
        for (const rel of this.relations) into.add(`${rel}.${col}`);
      }
    };
    attribute(this.looseColumns, this.columns);
    attribute(this.looseFilterColumns, this.filterColumns);
    attribute(this.looseExpressionColumns, this.expressionColumns);
    const stmt: SqlStatement = {
      command: this.command,
      relations: [...this.relations].sort(),
      columns: [...this.columns].sort(),
      functions: [...this.functions].sort(),
    };
    if (this.effects.size) stmt.effects = [...this.effects].sort();
    if (this.writes.size) stmt.writes = [...this.writes].sort();
    if (this.filterColumns.size) stmt.filter_columns = [...this.filterColumns].sort();
    if (this.expressionColumns.size) stmt.expression_columns = [...this.expressionColumns].sort();
    return [stmt, ...this.extra];
  }
}

function str(n: unknown): string | undefined {
  if (n && typeof n === 'object' && 'String' in n) {
    const s = (n as { String: { sval?: string } }).String.sval;
    return s ?? '';
  }
  return undefined;
}

function isNode(v: unknown): v is Node {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A RangeVar as the qualified names it may resolve to. */
function qualify(rv: { schemaname?: string; relname?: string; catalogname?: string }): string[] {
  const rel = rv.relname ?? '';
  if (rv.schemaname) return [`${rv.schemaname}.${rel}`];
  if (rel.startsWith('pg_')) return [`pg_catalog.${rel}`, `${PINNED_SCHEMA}.${rel}`];
  return [`${PINNED_SCHEMA}.${rel}`];
}

const COMMANDS: Record<string, string> = {
  SelectStmt: 'select',
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  CopyStmt: 'copy',
  CreateStmt: 'create_table',
  CreateTableAsStmt: 'create_table',
  ViewStmt: 'create_view',
  DropStmt: 'drop',
  TruncateStmt: 'truncate',
  AlterTableStmt: 'alter_table',
  IndexStmt: 'create_index',
  DoStmt: 'do',
  CreateFunctionStmt: 'create_function',
  CallStmt: 'call',
  VariableSetStmt: 'set',
  VariableShowStmt: 'show',
  AlterSystemStmt: 'alter_system',
  GrantStmt: 'grant',
  GrantRoleStmt: 'grant',
  LockStmt: 'lock',
  ExplainStmt: 'explain',
  DeallocateStmt: 'deallocate',
  ClosePortalStmt: 'close',
  DiscardStmt: 'discard',
  ListenStmt: 'listen',
  NotifyStmt: 'notify',
  UnlistenStmt: 'unlisten',
  VacuumStmt: 'vacuum',
  CreateSchemaStmt: 'create_schema',
  CreateRoleStmt: 'create_role',
  AlterRoleStmt: 'alter_role',
  CreateExtensionStmt: 'create_extension',
  CheckPointStmt: 'checkpoint',
  LoadStmt: 'load',
};

/** `CreateSomethingStmt` → `create_something`, for statement types without an explicit name. */
function commandOf(type: string): string {
  const known = COMMANDS[type];
  if (known) return known;
  return type
    .replace(/Stmt$/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

const TRANSACTION_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'begin',
  TRANS_STMT_START: 'begin',
  TRANS_STMT_COMMIT: 'commit',
  TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release',
  TRANS_STMT_ROLLBACK_TO: 'rollback',
  TRANS_STMT_PREPARE: 'prepare_transaction',
  TRANS_STMT_COMMIT_PREPARED: 'commit_prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
};

/** What a summary depended on besides the text, for deciding whether it may be reused (summary-cache.ts). */
interface SummaryTrace {
  /** A prepared statement or cursor of the session was looked up (EXECUTE, FETCH). */
  sessionRead: boolean;
}

/** Walks one top-level statement. */
class Walker {
  constructor(
    private readonly c: StatementCollector,
    private readonly overlay: SessionObjects,
    private readonly changes: Array<(o: SessionObjects) => void>,
    private readonly trace: SummaryTrace,
    /** CTE name → every base column its body reads (same-named CTEs of different levels merged: more, never less). */
    private readonly cteReads: Map<string, Set<string>> = new Map(),
  ) {}

  /** Summarise a nested statement (CTE body, EXPLAIN target, PREPARE body) as its own entries. */
  nested(node: Node, scope: Scope): SqlStatement[] {
    const [type] = Object.keys(node);
    if (!type) throw new Undescribable('empty statement node');
    const inner = new StatementCollector(commandOf(type), this.c.session);
    new Walker(inner, this.overlay, this.changes, this.trace, this.cteReads).statement(node, scope);
    return inner.finish();
  }

  /** Walk a position that decides which rows come back (see StatementCollector.filterColumns). */
  private filtered(walk: () => void): void {
    this.within('filterDepth', walk);
  }

  /** Walk with one of the collector's position counters raised. */
  private within(depth: 'filterDepth' | 'expressionDepth', walk: () => void): void {
    this.c[depth]++;
    try {
      walk();
    } finally {
      this.c[depth]--;
    }
  }

  /** Walk a derived source and return every base column it read. */
  private captured(walk: () => void): Set<string> {
    const reads = new Set<string>();
    this.c.captures.push(reads);
    try {
      walk();
    } finally {
      this.c.captures.pop();
    }
    return reads;
  }

  /** A nested statement's filter and expression columns are this one's too. */
  private mergeProbeColumns(st: SqlStatement): void {
    for (const col of st.filter_columns ?? []) this.c.filterColumns.add(col);
    for (const col of st.expression_columns ?? []) this.c.expressionColumns.add(col);
  }

  /** Walk an expression that could fail on the values it reads (see StatementCollector.expressionColumns). */
  private computed(walk: () => void): void {
    this.within('expressionDepth', walk);
  }

  /**
   * Walk one select-list entry. Shapes that cannot fail on a value pass a column through:
   * a column or whole-row reference, a cast to text, `||`, and the functions in
   * OUTPUT_SAFE_FUNCTIONS over such shapes. Anything else is walked as `computed`.
   */
  private output(n: unknown, scope: Scope): void {
    if (!isNode(n)) return this.generic(n, scope);
    const [type] = Object.keys(n);
    const body = n[type ?? ''] as Node;
    switch (type) {
      case 'ColumnRef':
      case 'A_Const':
      case 'SubLink':
        // A sub-select is a statement of its own: its select list is checked when it is walked.
        return this.generic(n, scope);
      case 'TypeCast': {
        const names = (((body.typeName as Node | undefined)?.names as unknown[]) ?? []).map(str);
        if (TEXT_TYPES.has(String(names[names.length - 1]).toLowerCase())) return this.output(body.arg, scope);
        break;
      }
      case 'A_Expr': {
        const op = ((body.name as unknown[]) ?? []).map(str);
        if (body.kind === 'AEXPR_OP' && op.length === 1 && op[0] === '||') {
          this.output(body.lexpr, scope);
          return this.output(body.rexpr, scope);
        }
        break;
      }
      case 'FuncCall': {
        if (body.agg_filter || body.over || body.agg_order) break;
        const parts = functionParts(body);
        const builtin = parts.length === 1 || (parts.length === 2 && parts[0] === 'pg_catalog');
        if (!builtin || !OUTPUT_SAFE_FUNCTIONS.has(parts[parts.length - 1] ?? '')) break;
        this.calledFunction(body);
        for (const a of (body.args as unknown[]) ?? []) this.output(a, scope);
        return;
      }
    }
    this.computed(() => this.generic(n, scope));
  }

  statement(node: Node, scope: Scope): void {
    const [type] = Object.keys(node);
    const body = node[type ?? ''] as Node;
    switch (type) {
      case 'SelectStmt':
        return this.select(body, scope);
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        return this.modify(type, body, scope);
      case 'ExplainStmt': {
        const analyze = ((body.options as unknown[]) ?? []).some((o) => isNode(o) && (o.DefElem as Node | undefined)?.defname === 'analyze');
        const inner = this.nested(body.query as Node, scope);
        if (analyze) {
          // EXPLAIN ANALYZE runs its statement: it is that statement.
          this.replaceWith(inner, 'explain_analyze');
        } else {
          this.mergeReads(inner);
          this.c.effects.add('explain');
        }
        return;
      }
      case 'CreateTableAsStmt': {
        const into = (body.into as Node).rel as Node;
        for (const r of qualify(into)) {
          this.c.relations.add(r);
          this.c.writes.add(r);
        }
        this.c.extra.push(...this.nested(body.query as Node, scope));
        return;
      }
      case 'PrepareStmt': {
        const name = String(body.name ?? '');
        const inner = this.nested(body.query as Node, scope);
        this.replaceWith(inner, 'prepare');
        this.overlay.prepared.set(name, inner);
        this.changes.push((o) => o.prepared.set(name, inner));
        return;
      }
      case 'ExecuteStmt': {
        const name = String(body.name ?? '');
        this.trace.sessionRead = true;
        const inner = this.overlay.prepared.get(name);
        if (!inner) throw new Undescribable(`EXECUTE of unknown prepared statement`);
        this.replaceWith(inner, 'execute');
        this.generic(body.params, scope);
        return;
      }
      case 'DeallocateStmt': {
        const name = body.name === undefined ? undefined : String(body.name);
        this.changes.push((o) => (name === undefined ? o.prepared.clear() : o.prepared.delete(name)));
        return;
      }
      case 'DeclareCursorStmt': {
        const name = String(body.portalname ?? '');
        const inner = this.nested(body.query as Node, scope);
        this.replaceWith(inner, 'declare_cursor');
        this.overlay.cursors.set(name, inner);
        this.changes.push((o) => o.cursors.set(name, inner));
        return;
      }
      case 'FetchStmt': {
        const name = String(body.portalname ?? '');
        this.trace.sessionRead = true;
        const inner = this.overlay.cursors.get(name);
        if (!inner) throw new Undescribable('FETCH from unknown cursor');
        if (body.ismove) this.c.effects.add('move');
        else this.replaceWith(inner, 'fetch');
        return;
      }
      case 'ClosePortalStmt': {
        const name = body.portalname === undefined ? undefined : String(body.portalname);
        this.changes.push((o) => (name === undefined ? o.cursors.clear() : o.cursors.delete(name)));
        return;
      }
      case 'CopyStmt': {
        if (body.relation) {
          const rels = qualify(body.relation as Node);
          for (const r of rels) {
            this.c.relations.add(r);
            if (body.is_from) this.c.writes.add(r);
            const cols = (body.attlist as unknown[] | undefined)?.map(str).filter((s): s is string => s !== undefined);
            if (cols && cols.length) for (const col of cols) this.c.addColumn(`${r}.${col}`);
            else this.c.addColumn(`${r}.*`);
          }
        }
        if (body.query) {
          this.mergeReads(this.nested(body.query as Node, scope));
          this.c.effects.add('copy_query');
        }
        // Only plain text format can be masked row by row; other options are reported so the proxy can tell.
        const opts = ((body.options as unknown[]) ?? []).map((o) => (isNode(o) ? (o.DefElem as Node | undefined) : undefined));
        const plainText = opts.every((o) => o?.defname === 'format' && str((o.arg as Node | undefined) ?? {}) === 'text');
        if (!plainText) this.c.effects.add('copy_options');
        if (body.is_program) this.c.effects.add('copy_program');
        else if (body.filename !== undefined) this.c.effects.add('copy_file');
        this.c.effects.add(body.is_from ? 'copy_from' : 'copy_to');
        this.generic(body.options, scope);
        return;
      }
      case 'VariableSetStmt': {
        const name = String(body.name ?? '').toLowerCase();
        if (body.kind === 'VAR_RESET_ALL' || PINNED_SETTINGS.has(name)) throw new Undescribable(`changing ${name || 'all settings'} is not allowed through the proxy`);
        this.c.effects.add(`set:${name}`);
        return;
      }
      case 'DiscardStmt':
        // DISCARD ALL resets the pinned search_path and forgets prepared statements behind our back.
        throw new Undescribable('DISCARD is not allowed through the proxy');
      case 'TransactionStmt':
        return;
      default:
        this.generic(body, scope);
    }
  }

  /** This statement is another one (EXPLAIN ANALYZE x, EXECUTE of x…): copy x into it. */
  private replaceWith(inner: SqlStatement[], effect: string): void {
    const [head, ...rest] = inner;
    if (!head) return;
    (this.c as { command: string }).command = head.command;
    for (const r of head.relations) this.c.relations.add(r);
    for (const col of head.columns) this.c.addColumn(col);
    this.mergeProbeColumns(head);
    for (const f of head.functions) this.c.functions.add(f);
    for (const w of head.writes ?? []) this.c.writes.add(w);
    for (const e of head.effects ?? []) this.c.effects.add(e);
    this.c.effects.add(effect);
    this.c.extra.push(...rest);
  }

  private mergeReads(inner: SqlStatement[]): void {
    const [head, ...rest] = inner;
    if (!head) return;
    for (const r of head.relations) this.c.relations.add(r);
    for (const col of head.columns) this.c.addColumn(col);
    this.mergeProbeColumns(head);
    for (const f of head.functions) this.c.functions.add(f);
    for (const e of head.effects ?? []) this.c.effects.add(e);
    // Writes of an inner statement stay visible as their own statement entries.
    if (head.writes?.length) this.c.extra.push(head);
    this.c.extra.push(...rest);
  }

  private withClause(w: Node | undefined, scope: Scope): Scope {
    if (!w) return scope;
    const ctes = ((w.ctes as unknown[]) ?? []).map((n) => (n as { CommonTableExpr: Node }).CommonTableExpr);
    const names = ctes.map((c) => String(c.ctename ?? ''));
    const recursive = Boolean(w.recursive);
    ctes.forEach((cte, i) => {
      // A non-recursive CTE sees only the CTEs before it; a name after it still means a table.
      const visible = new Set([...scope.ctes, ...(recursive ? names : names.slice(0, i))]);
      const q = cte.ctequery as Node;
      const [type] = Object.keys(q);
      const inner = this.nested(q, { ctes: visible, frames: scope.frames });
      const reads = this.cteReads.get(names[i] ?? '') ?? new Set<string>();
      for (const st of inner) for (const col of st.columns) reads.add(col);
      this.cteReads.set(names[i] ?? '', reads);
      if (type !== 'SelectStmt') {
        this.c.effects.add('data_modifying_cte');
        for (const s of inner) for (const wr of s.writes ?? []) this.c.writes.add(wr);
        this.c.extra.push(...inner);
        // What the CTE returns is readable by the outer query.
        for (const s of inner) for (const col of s.columns) this.c.addColumn(col);
        for (const s of inner) this.mergeProbeColumns(s);
        for (const s of inner) for (const r of s.relations) this.c.relations.add(r);
      } else this.mergeReads(inner);
    });
    return { ctes: new Set([...scope.ctes, ...names]), frames: scope.frames };
  }

  private select(s: Node, outer: Scope): void {
    const scope = this.withClause(s.withClause as Node | undefined, outer);
    if (s.op && s.op !== 'SETOP_NONE') {
      this.c.effects.add('set_operation');
      this.select(s.larg as Node, scope);
      this.select(s.rarg as Node, scope);
      this.filtered(() => this.generic([s.sortClause, s.limitCount, s.limitOffset], scope));
      return;
    }
    if (s.intoClause) {
      const rel = (s.intoClause as Node).rel as Node;
      this.c.effects.add('select_into');
      const targets = qualify(rel);
      for (const r of targets) this.c.writes.add(r);
      this.c.extra.push({ command: 'create_table', relations: targets, columns: [], functions: [], writes: targets, effects: ['select_into'] });
    }
    if (s.lockingClause) this.c.effects.add('row_lock');
    const frame = newFrame();
    const inner: Scope = { ctes: scope.ctes, frames: [...scope.frames, frame] };
    const deferred: unknown[] = [];
    for (const item of (s.fromClause as unknown[]) ?? []) this.fromItem(item as Node, frame, inner, deferred);
    this.filtered(() => this.generic(deferred, inner));
    for (const t of (s.targetList as unknown[]) ?? []) {
      const entry = isNode(t) ? (t.ResTarget as Node | undefined) : undefined;
      if (entry) this.output(entry.val, inner);
      else this.generic(t, inner);
    }
    this.generic([s.valuesLists, s.lockingClause], inner);
    this.filtered(() => {
      this.generic([s.whereClause, s.groupClause, s.havingClause, s.windowClause, s.sortClause, s.limitCount, s.limitOffset, s.distinctClause], inner);
      const sorted = ((s.sortClause as unknown[]) ?? []).map((x) => ((x as Node).SortBy as Node | undefined)?.node);
      for (const item of [...sorted, ...((s.groupClause as unknown[]) ?? []), ...((s.distinctClause as unknown[]) ?? [])]) {
        this.outputReference(item, (s.targetList as unknown[]) ?? [], inner);
      }
    });
  }

  private addRelation(rv: Node, frame: Frame | undefined, scope: Scope): void {
    const rel = String(rv.relname ?? '');
    const alias = ((rv.alias as Node | undefined)?.aliasname as string | undefined) ?? rel;
    if (!rv.schemaname && scope.ctes.has(rel)) {
      frame?.sources.set(alias, null);
      frame?.derived.set(alias, this.cteReads.get(rel) ?? new Set());
      return;
    }
    const names = qualify(rv);
    for (const n of names) this.c.relations.add(n);
    if (frame) {
      frame.sources.set(alias, names[0] ?? null);
      if (names.length > 1) frame.sources.set(`${alias}\u0000alt`, names[1] ?? null);
      frame.relations.push(...names);
    }
  }

  /**
   * `ORDER BY 2`, `GROUP BY 1`, `DISTINCT ON (2)` and `ORDER BY s` (an output alias) name a
   * select-list entry, not a column: walk what they name (under `filtered`). An ordinal is a
   * constant, and a summary must not depend on constants (the summary cache and the
   * fingerprint treat `ORDER BY 1` and `ORDER BY 2` as one statement), so any ordinal counts
   * as the whole select list.
   */
  private outputReference(item: unknown, targets: unknown[], scope: Scope): void {
    if (!isNode(item)) return;
    if ('A_Const' in item) {
      this.generic(targets, scope);
      return;
    }
    const fields = (item.ColumnRef as Node | undefined)?.fields as unknown[] | undefined;
    if (fields?.length !== 1) return;
    const name = str(fields[0]);
    for (const t of targets) {
      const entry = isNode(t) ? (t.ResTarget as Node | undefined) : undefined;
      if (name !== undefined && entry?.name === name) this.generic(entry.val, scope);
    }
  }

  private fromItem(item: Node, frame: Frame, scope: Scope, deferred: unknown[]): void {
    const [type] = Object.keys(item);
    const body = item[type ?? ''] as Node;
    switch (type) {
      case 'RangeVar':
        return this.addRelation(body, frame, scope);
      case 'JoinExpr':
        this.fromItem(body.larg as Node, frame, scope, deferred);
        this.fromItem(body.rarg as Node, frame, scope, deferred);
        deferred.push(body.quals);
        // USING (x) names a column of both sides, as plain strings rather than ColumnRefs.
        this.filtered(() => {
          for (const col of ((body.usingClause as unknown[]) ?? []).map(str)) {
            if (col === undefined) continue;
            for (const r of frame.relations) this.c.addColumn(`${r}.${col}`);
            for (const reads of frame.derived.values()) this.c.addDerivedReads(reads);
          }
        });
        if (body.alias) {
          const alias = String((body.alias as Node).aliasname);
          frame.sources.set(alias, null);
          frame.joins.set(alias, [...frame.relations]);
        }
        return;
      case 'RangeSubselect': {
        const alias = (body.alias as Node | undefined)?.aliasname;
        // Lateral or not, walking with the current frame only over-attributes.
        const reads = this.captured(() => this.select((body.subquery as Node).SelectStmt as Node, scope));
        if (alias) {
          frame.sources.set(String(alias), null);
          frame.derived.set(String(alias), reads);
        }
        return;
      }
      case 'RangeFunction': {
        const alias = (body.alias as Node | undefined)?.aliasname;
        // A set-returning function's arguments decide the rows it returns.
        const reads = this.captured(() => this.filtered(() => this.generic(body.functions, scope)));
        if (alias) {
          frame.sources.set(String(alias), null);
          frame.derived.set(String(alias), reads);
        }
        return;
      }
      default:
        // RangeTableSample, RangeTableFunc (XMLTABLE), JSON_TABLE…: walk everything.
        this.generic(body, scope);
    }
  }

  private modify(type: string, s: Node, outer: Scope): void {
    const scope = this.withClause(s.withClause as Node | undefined, outer);
    const frame = newFrame();
    const inner: Scope = { ctes: scope.ctes, frames: [...scope.frames, frame] };
    const target = s.relation as Node;
    this.addRelation(target, frame, scope);
    const targetNames = qualify(target);
    for (const n of targetNames) this.c.writes.add(n);
    const deferred: unknown[] = [];
    if (type === 'InsertStmt') {
      frame.sources.set('excluded', targetNames[0] ?? null);
      for (const col of (s.cols as unknown[]) ?? []) {
        const name = ((col as Node).ResTarget as Node).name;
        for (const n of targetNames) this.c.addColumn(`${n}.${String(name)}`);
      }
      if (s.selectStmt) {
        // The source query cannot see the target as a FROM item.
        this.select((s.selectStmt as Node).SelectStmt as Node, scope);
      } else for (const n of targetNames) this.c.addColumn(`${n}.*`);
      this.generic([s.onConflictClause, s.returningList], inner);
      return;
    }
    if (type === 'UpdateStmt') {
      for (const t of (s.targetList as unknown[]) ?? []) {
        const name = ((t as Node).ResTarget as Node).name;
        for (const n of targetNames) this.c.addColumn(`${n}.${String(name)}`);
      }
    }
    if (type === 'MergeStmt') {
      this.fromItem(s.sourceRelation as Node, frame, inner, deferred);
      deferred.push(s.joinCondition);
      for (const n of targetNames) this.c.addColumn(`${n}.*`);
    }
    for (const item of [...((s.fromClause as unknown[]) ?? []), ...((s.usingClause as unknown[]) ?? [])]) this.fromItem(item as Node, frame, inner, deferred);
    this.generic([s.targetList, s.returningList], inner);
    this.filtered(() => this.generic([deferred, s.whereClause, s.mergeWhenClauses], inner));
  }

  private columnRef(ref: Node, scope: Scope): void {
    const fields = (ref.fields as unknown[]) ?? [];
    const star = fields.length > 0 && isNode(fields[fields.length - 1]) && 'A_Star' in (fields[fields.length - 1] as Node);
    const names = fields.map(str);
    const col = star ? '*' : (names[names.length - 1] ?? '');
    const qualifiers = names.slice(0, star ? undefined : -1).filter((n): n is string => n !== undefined);
    const frames = [...scope.frames].reverse();
    if (qualifiers.length === 0) {
      // Unqualified: any relation in any visible frame may own it. A bare name equal to an
      // alias may also be a whole-row reference (`row_to_json(c)`).
      let found = false;
      for (const f of frames) {
        for (const r of f.relations) {
          this.c.addColumn(`${r}.${col}`);
          found = true;
        }
        // It may be an output column of any derived source in view, whatever that one reads.
        for (const reads of f.derived.values()) this.c.addDerivedReads(reads);
        const whole = f.sources.get(col);
        if (whole) this.c.addColumn(`${whole}.*`);
        const alt = f.sources.get(`${col}\u0000alt`);
        if (alt) this.c.addColumn(`${alt}.*`);
        if (whole !== undefined) found = true;
      }
      if (!found) this.c.addLooseColumn(col);
      return;
    }
    // `a.b`: alias a column b, or (a composite column a, field b): report both readings.
    // `s.t.c` / `db.s.t.c`: a qualified relation.
    const alias = qualifiers[qualifiers.length - 1] as string;
    let resolved = false;
    if (qualifiers.length >= 2) {
      const rel = `${qualifiers[qualifiers.length - 2]}.${alias}`;
      this.c.addColumn(`${rel}.${col}`);
      this.c.relations.add(rel);
      resolved = true;
    }
    for (const f of frames) {
      if (f.sources.has(alias)) {
        const rel = f.sources.get(alias);
        const alt = f.sources.get(`${alias}\u0000alt`);
        if (rel) this.c.addColumn(`${rel}.${col}`);
        if (alt) this.c.addColumn(`${alt}.${col}`);
        const reads = f.derived.get(alias);
        if (reads) this.c.addDerivedReads(reads);
        for (const r of f.joins.get(alias) ?? []) this.c.addColumn(`${r}.${col}`);
        resolved = true;
        break;
      }
    }
    if (!resolved) {
      // Not an alias: a composite-typed column named `alias` (whole value read), in any frame.
      for (const f of frames) for (const r of f.relations) this.c.addColumn(`${r}.${alias}`);
      if (frames.every((f) => f.relations.length === 0)) this.c.addLooseColumn(alias);
    }
  }

  /**
   * Report a call's function (bare and, when qualified, with its schema, lower case) and
   * refuse the ones the proxy never lets through. Returns the name's lower-case parts.
   */
  private calledFunction(fc: Node): string[] {
    const parts = functionParts(fc);
    const bare = parts[parts.length - 1] ?? '';
    this.c.functions.add(bare);
    if (parts.length > 1) this.c.functions.add(parts.join('.'));
    if (SETTING_FUNCTIONS.has(bare)) throw new Undescribable(`${bare}() is not allowed through the proxy`);
    return parts;
  }

  private funcCall(fc: Node, scope: Scope): void {
    const parts = this.calledFunction(fc);
    const bare = parts[parts.length - 1] ?? '';
    if (SET_RETURNING_FUNCTIONS.has(bare)) this.filtered(() => this.generic([fc.args, fc.agg_order, fc.agg_filter, fc.over], scope));
    else this.generic([fc.args, fc.agg_order, fc.agg_filter, fc.over], scope);
  }

  /** Walk any subtree: find relations, columns, functions and nested statements wherever they are. */
  generic(n: unknown, scope: Scope, depth = 0): void {
    if (depth > 2000) throw new Undescribable('statement nested too deeply');
    if (Array.isArray(n)) {
      for (const x of n) this.generic(x, scope, depth + 1);
      return;
    }
    if (!isNode(n)) return;
    for (const [key, value] of Object.entries(n)) {
      if (!isNode(value) && !Array.isArray(value)) continue;
      switch (key) {
        case 'RangeVar':
          this.addRelation(value as Node, undefined, scope);
          continue;
        case 'ColumnRef':
          this.columnRef(value as Node, scope);
          continue;
        case 'FuncCall':
          this.funcCall(value as Node, scope);
          continue;
        case 'SelectStmt':
          this.select(value as Node, scope);
          continue;
        case 'InsertStmt':
        case 'UpdateStmt':
        case 'DeleteStmt':
        case 'MergeStmt':
          // DML nested in an expression position (rule actions…): its own statement entry.
          this.c.extra.push(...this.nested({ [key]: value }, scope));
          continue;
        case 'TypeName':
        case 'typeName':
          continue;
        default:
          this.generic(value, scope, depth + 1);
      }
    }
  }
}

/** A call's function name, in lower-case parts (`pg_catalog.upper` → ['pg_catalog', 'upper']). */
function functionParts(fc: Node): string[] {
  return ((fc.funcname as unknown[]) ?? []).map(str).filter((s): s is string => s !== undefined).map((p) => p.toLowerCase());
}

/** Drop positions and constant values so a query's shape hashes the same for any parameters. */
function shape(n: unknown): unknown {
  if (Array.isArray(n)) return n.map(shape);
  if (!isNode(n)) return n;
  const out: Node = {};
  for (const [k, v] of Object.entries(n)) {
    if (k === 'location' || k === 'stmt_location' || k === 'stmt_len') continue;
    if (k === 'A_Const') {
      out[k] = '?';
      continue;
    }
    out[k] = shape(v);
  }
  return out;
}

/** A summary with what summary-cache.ts needs to judge whether it may be reused for other constants. */
export interface TracedSummary {
  result: SummaryResult;
  /** The parse tree (present when the text parsed). */
  tree?: { stmts?: Array<{ stmt?: Node }> };
  /** Top-level statement node types, in order. */
  types: string[];
  /** Number of session-object changes the summary would apply. */
  changes: number;
  sessionRead: boolean;
}

/**
 * Summarise every statement of `sql`. `session` is read, never changed: the caller applies
 * `apply` once the query has been forwarded.
 */
export function summarize(sql: string, session: SessionObjects): SummaryResult {
  return summarizeTraced(sql, session).result;
}

/** `summarize`, also reporting the parse tree and what the summary depended on. */
export function summarizeTraced(sql: string, session: SessionObjects): TracedSummary {
  const trace: SummaryTrace = { sessionRead: false };
  const types: string[] = [];
  let tree: { stmts?: Array<{ stmt?: Node }> };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch {
    return { result: { ok: false, reason: 'the statement does not parse' }, types, changes: 0, sessionRead: false };
  }
  const overlay: SessionObjects = { prepared: new Map(session.prepared), cursors: new Map(session.cursors) };
  const changes: Array<(o: SessionObjects) => void> = [];
  const statements: SqlStatement[] = [];
  try {
    for (const raw of tree.stmts ?? []) {
      const stmt = raw.stmt;
      if (!stmt) continue;
      const [type] = Object.keys(stmt);
      if (!type) throw new Undescribable('empty statement');
      types.push(type);
      let command = commandOf(type);
      if (type === 'TransactionStmt') command = TRANSACTION_KINDS[String((stmt[type] as Node).kind)] ?? 'transaction';
      const c = new StatementCollector(command, session);
      new Walker(c, overlay, changes, trace).statement(stmt, { ctes: new Set(), frames: [] });
      statements.push(...c.finish());
    }
  } catch (err) {
    const reason = err instanceof Undescribable ? err.message : 'the statement could not be summarised';
    return { result: { ok: false, reason }, tree, types, changes: changes.length, sessionRead: trace.sessionRead };
  }
  const fingerprint = hash('sha256', JSON.stringify(shape(tree.stmts ?? [])), 'hex');
  // Frozen: summaries are shared (the summary cache, prepared statements, the PDP client's key memo).
  for (const st of statements) freezeStatement(st);
  Object.freeze(statements);
  return {
    result: {
      ok: true,
      statements,
      fingerprint,
      apply:
        changes.length === 0
          ? NO_CHANGES
          : (objs) => {
              for (const ch of changes) ch(objs);
            },
    },
    tree,
    types,
    changes: changes.length,
    sessionRead: trace.sessionRead,
  };
}

/** `apply` of a summary that changes no session object. */
export const NO_CHANGES = (): void => undefined;

function freezeStatement(st: SqlStatement): void {
  if (Object.isFrozen(st)) return;
  Object.freeze(st.relations);
  Object.freeze(st.columns);
  Object.freeze(st.functions);
  if (st.effects) Object.freeze(st.effects);
  if (st.writes) Object.freeze(st.writes);
  if (st.filter_columns) Object.freeze(st.filter_columns);
  if (st.expression_columns) Object.freeze(st.expression_columns);
  Object.freeze(st);
}

/** Every column a statement reads or writes, including `rel.*` for star and whole-row references. */
export function referencedColumns(statements: readonly SqlStatement[]): Set<string> {
  const out = new Set<string>();
  for (const s of statements) for (const c of s.columns) out.add(c);
  return out;
}
