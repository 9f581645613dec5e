/**
 * The statement summariser against the bypass cases: what each statement reads, writes and
 * calls must be reported (more, never less), and what cannot be described is refused.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { SqlStatement } from '../../pdp-server/src/contract.js';
import { loadSqlParser, newSessionObjects, summarize, type SessionObjects, type SummaryResult } from '../../shims/pg-proxy/src/sql-summary.js';
import { SummaryCache } from '../../shims/pg-proxy/src/summary-cache.js';
import { withOtherLiterals } from './literal-variants.js';

before(() => loadSqlParser());

/**
 * Every case also runs through the summary cache, twice: once with its own text and once
 * with every literal changed (a cache hit when the first was stored). Both must agree
 * exactly with the uncached summariser on the same text.
 */
const cache = new SummaryCache(1000);
const comparable = (r: SummaryResult) => (r.ok ? { ok: true, statements: r.statements, fingerprint: r.fingerprint } : { ok: false, reason: r.reason });
function throughCache(sql: string, session: SessionObjects): void {
  for (const text of [sql, withOtherLiterals(sql), sql]) {
    assert.deepEqual(comparable(cache.summarize(text, session)), comparable(summarize(text, session)), `cached and uncached summaries differ for ${text}`);
  }
}

function ok(sql: string, session: SessionObjects = newSessionObjects()): SqlStatement[] {
  throughCache(sql, session);
  const r = summarize(sql, session);
  assert.ok(r.ok, `expected ${sql} to be summarised: ${r.ok ? '' : r.reason}`);
  r.apply(session);
  return r.statements;
}
function refused(sql: string, session: SessionObjects = newSessionObjects()): string {
  throughCache(sql, session);
  const r = summarize(sql, session);
  assert.equal(r.ok, false, `expected ${sql} to be refused`);
  return r.ok ? '' : r.reason;
}
const all = (ss: SqlStatement[], k: 'relations' | 'columns' | 'functions' | 'writes' | 'effects' | 'filter_columns' | 'expression_columns') => new Set(ss.flatMap((s) => s[k] ?? []));
const commands = (ss: SqlStatement[]) => ss.map((s) => s.command);

describe('sql summary: statements and lexical tricks', () => {
  it('reports every statement of a multi-statement query', () => {
    const ss = ok('select 1; delete from orders; insert into customers(id) values (3)');
    assert.deepEqual(commands(ss), ['select', 'delete', 'insert']);
    assert.ok(all(ss, 'writes').has('public.orders') && all(ss, 'writes').has('public.customers'));
  });
  it('sees through comments, nested comments, dollar quoting and E strings', () => {
    const ss = ok("/* x /* nested */ still comment */ select $q$ ; delete from t $q$, E'\\' ; drop table x --', ssn -- tail\n from customers");
    assert.deepEqual(commands(ss), ['select']);
    assert.ok(all(ss, 'columns').has('public.customers.ssn'));
  });
  it('keeps quoted identifiers case-sensitive and folds unquoted ones', () => {
    assert.ok(all(ok('select "SSN" from "Customers"'), 'relations').has('public.Customers'));
    assert.ok(all(ok('select SSN from CUSTOMERS'), 'columns').has('public.customers.ssn'));
  });
  it('qualifies relations with the pinned search_path and reports pg_* names in both schemas', () => {
    assert.deepEqual(ok('select * from orders')[0]?.relations, ['public.orders']);
    assert.deepEqual(ok('select * from other.orders')[0]?.relations, ['other.orders']);
    const pg = ok('select * from pg_authid')[0]?.relations ?? [];
    assert.ok(pg.includes('pg_catalog.pg_authid') && pg.includes('public.pg_authid'));
  });
  it('refuses changes to the pinned search_path, role and settings functions', () => {
    refused('set search_path = evil, public');
    refused('SET LOCAL search_path TO evil');
    refused('set role postgres');
    refused('set session authorization postgres');
    refused('reset all');
    refused('discard all');
    refused("select set_config('search_path', 'evil', false)");
    refused("select pg_catalog.set_config('search_path', 'evil', false)");
  });
  it('refuses what does not parse', () => {
    refused('select from where');
    refused('select 1; selec 2');
  });
});

describe('sql summary: hidden effects', () => {
  it('reports data-modifying CTEs as writes and as their own statements', () => {
    const ss = ok('with gone as (delete from orders returning *) select * from gone');
    assert.ok(all(ss, 'effects').has('data_modifying_cte'));
    assert.ok(commands(ss).includes('delete'));
    assert.ok(all(ss, 'writes').has('public.orders'));
  });
  it('keeps CTE scoping exact: a later CTE name in a non-recursive WITH is still a table', () => {
    const ss = ok('with a as (select * from customers), customers as (select 1) select * from a');
    assert.ok(all(ss, 'relations').has('public.customers'));
    const shadow = ok('select * from (with customers as (select 1) select * from customers) x, customers');
    assert.ok(all(shadow, 'relations').has('public.customers'));
  });
  it('reports SELECT INTO and CREATE TABLE AS as table creation', () => {
    const into = ok('select ssn into stolen from customers');
    assert.ok(commands(into).includes('create_table'));
    assert.ok(all(into, 'writes').has('public.stolen'));
    assert.ok(all(into, 'columns').has('public.customers.ssn'));
    const ctas = ok('create table stolen as select ssn from customers');
    assert.ok(all(ctas, 'writes').has('public.stolen') && all(ctas, 'columns').has('public.customers.ssn'));
  });
  it('unwraps EXPLAIN ANALYZE into the statement it runs', () => {
    const ss = ok('explain (analyze, buffers) delete from orders');
    assert.equal(ss[0]?.command, 'delete');
    assert.ok(all(ss, 'effects').has('explain_analyze'));
    assert.ok(all(ok('explain select ssn from customers'), 'columns').has('public.customers.ssn'));
  });
  it('remembers PREPARE text per session for EXECUTE, and refuses unknown names', () => {
    const s = newSessionObjects();
    ok('prepare p(int) as delete from orders where id = $1', s);
    const ex = ok('execute p(1)', s);
    assert.equal(ex[0]?.command, 'delete');
    assert.ok(all(ex, 'writes').has('public.orders'));
    refused('execute q', s);
    ok('deallocate p', s);
    refused('execute p(1)', s);
    // PREPARE and EXECUTE in one query
    assert.equal(ok('prepare z as select ssn from customers; execute z')[1]?.command, 'select');
  });
  it('remembers cursors for FETCH', () => {
    const s = newSessionObjects();
    ok('declare c cursor for select ssn from customers', s);
    assert.ok(all(ok('fetch 10 from c', s), 'columns').has('public.customers.ssn'));
    refused('fetch 1 from other', s);
  });
  it('reports side-effect functions wherever they are called, qualified or not', () => {
    const f = all(ok("select 1 from orders where pg_catalog.pg_read_file('/etc/passwd') is not null order by lo_import('/x')"), 'functions');
    assert.ok(f.has('pg_read_file') && f.has('pg_catalog.pg_read_file') && f.has('lo_import'));
    assert.ok(all(ok("select * from dblink('x', 'select 1') as t(a int)"), 'functions').has('dblink'));
  });
  it('reports COPY program, file, direction and options', () => {
    assert.ok(all(ok("copy customers to program 'id'"), 'effects').has('copy_program'));
    assert.ok(all(ok("copy customers from '/tmp/x'"), 'effects').has('copy_file'));
    const csv = ok('copy (select ssn from customers) to stdout with (format csv)');
    assert.ok(all(csv, 'effects').has('copy_options') && all(csv, 'effects').has('copy_query'));
    assert.ok(all(ok('copy customers from stdin'), 'writes').has('public.customers'));
  });
  it('names dangerous commands', () => {
    assert.equal(ok('do $$ begin perform 1; end $$')[0]?.command, 'do');
    assert.equal(ok('create function f() returns int language sql as $$ select 1 $$')[0]?.command, 'create_function');
    assert.equal(ok("alter system set work_mem = '1GB'")[0]?.command, 'alter_system');
  });
});

describe('sql summary: reaching columns indirectly', () => {
  const reads = (sql: string, col: string) => assert.ok(all(ok(sql), 'columns').has(col), `${sql} should report ${col}`);
  it('through aliases, expressions, casts and aggregates', () => {
    reads('select c.ssn as harmless from customers c', 'public.customers.ssn');
    reads("select 'x' || ssn::text from customers", 'public.customers.ssn');
    reads('select cast(ssn as int) from customers', 'public.customers.ssn');
    reads('select string_agg(ssn, ",") from customers', 'public.customers.ssn');
  });
  it('through row_to_json, t.*, whole-row references and star', () => {
    reads('select row_to_json(c) from customers c', 'public.customers.*');
    reads('select c.* from customers c', 'public.customers.*');
    reads('select c from customers c', 'public.customers.*');
    reads('select * from orders join customers on true', 'public.customers.*');
  });
  it('through UNION, subqueries, CTEs and RETURNING', () => {
    reads('select name from orders union select ssn from customers', 'public.customers.ssn');
    reads('select (select ssn from customers limit 1)', 'public.customers.ssn');
    reads('select * from (select ssn from customers) s', 'public.customers.ssn');
    reads('with x as (select ssn from customers) select * from x', 'public.customers.ssn');
    reads('update customers set name = ssn returning name', 'public.customers.ssn');
    reads('select o.id from orders o where exists (select 1 from customers c where c.ssn like o.note)', 'public.customers.ssn');
  });
  it('fingerprints the query shape, not its constants', () => {
    const a = summarize('select * from orders where id = 1', newSessionObjects());
    const b = summarize('select  *  from orders where id = 2', newSessionObjects());
    const c = summarize('select * from customers where id = 1', newSessionObjects());
    assert.ok(a.ok && b.ok && c.ok);
    assert.equal(a.fingerprint, b.fingerprint);
    assert.notEqual(a.fingerprint, c.fingerprint);
  });
});

describe('sql summary: columns that decide which rows come back', () => {
  const filters = (sql: string) => all(ok(sql), 'filter_columns');
  const SSN = 'public.customers.ssn';
  it('reports WHERE, JOIN, GROUP BY, HAVING, ORDER BY, DISTINCT ON and LIMIT columns', () => {
    for (const sql of [
      "select name from customers where ssn like '1%'",
      'select o.id from orders o join customers c on o.note = c.ssn',
      'select o.id from orders o join customers c using (ssn)',
      'select count(*) from customers group by ssn',
      "select count(*) from customers having max(ssn) > '5'",
      'select name from customers order by ssn',
      'select distinct on (ssn) name from customers',
      'select name from customers limit (select length(ssn) from customers limit 1)',
      'select name from customers union select name from customers order by (select ssn from customers limit 1)',
      "delete from customers where ssn = '1'",
    ]) assert.ok(filters(sql).has(SSN), sql);
  });
  it('follows sub-selects, derived tables, CTEs, whole rows and set-returning functions', () => {
    for (const sql of [
      "select name from customers c where exists (select 1 from customers d where d.ssn like '1%' and d.id = c.id)",
      "select name from customers where id in (select id from customers where ssn like '1%')",
      "select s.name from (select name, ssn as x from customers) s where s.x like '1%'",
      "select s.name from (select name, ssn as x from customers) s where x like '1%'",
      "with w as (select ssn as x from customers) select count(*) from w where x like '1%'",
      "select name from customers c where c::text like '%-%'",
      "select name from customers, lateral generate_series(1, length(ssn)) g",
      'select name, generate_series(1, length(ssn)) from customers',
      "select name, unnest(string_to_array(ssn, '-')) from customers",
      "explain analyze select name from customers where ssn like '1%'",
      "select j.name from (customers c join orders o on o.customer_id = c.id) as j where j.ssn like '1%'",
    ]) {
      const f = filters(sql);
      assert.ok(f.has(SSN) || f.has('public.customers.*'), `${sql}: ${[...f].join(', ')}`);
    }
  });
  it('resolves ordinals and output aliases in ORDER BY, GROUP BY and DISTINCT ON', () => {
    for (const sql of [
      'select name, ssn from customers order by 2 limit 1',
      'select name, ssn as s from customers order by s limit 1',
      'select ssn, count(*) from customers group by 1',
      'select distinct on (2) name, ssn from customers',
    ]) assert.ok(filters(sql).has(SSN), sql);
    // An ordinal counts as the whole select list: summaries never depend on a constant's value.
    assert.ok(filters('select * from customers order by 3').has('public.customers.*'));
    assert.ok(filters('select name, ssn from customers order by 1').has(SSN));
    assert.deepEqual([...filters('select name, id from customers order by 2')].sort(), ['public.customers.id', 'public.customers.name']);
  });
  it('keeps them through PREPARE/EXECUTE, cursors and COPY of a query', () => {
    const session = newSessionObjects();
    for (const sql of [
      'prepare p as select name from customers where ssn like $1',
      "execute p('1%')",
      'declare c cursor for select name from customers order by ssn',
      'fetch 1 from c',
      "copy (select name from customers where ssn like '1%') to stdout",
    ]) assert.ok(all(ok(sql, session), 'filter_columns').has(SSN), sql);
  });
  it('does not report columns that are only read', () => {
    for (const sql of [
      'select name, ssn from customers',
      'select upper(ssn), row_to_json(c) from customers c',
      'select s.x from (select ssn as x from customers) s',
      'with w as (select ssn from customers) select ssn from w',
      "select name from customers where id = 1 order by name",
      'select j.ssn from (customers c join orders o on o.customer_id = c.id) as j where j.note is not null',
    ]) assert.ok(!filters(sql).has(SSN) && !filters(sql).has('public.customers.*'), sql);
  });
});

describe('sql summary: columns computed on in a select list', () => {
  const computed = (sql: string) => all(ok(sql), 'expression_columns');
  const SSN = 'public.customers.ssn';
  it('reports expressions that could fail on a value', () => {
    for (const sql of [
      'select cast(ssn as int) from customers',
      "select 1/(case when ssn like '1%' then 0 else 1 end) from customers",
      "select div(1, position('1' in ssn)) from customers",
      "select count(*) filter (where ssn > '1') from customers",
      "select string_agg(ssn, ',' order by ascii(ssn) / 0) from customers",
      'select 1/(ascii(s.x) - 49) from (select ssn as x from customers) s',
      'select (select 1/(ascii(ssn) - 49) from customers limit 1)',
      'with w as (select ascii(ssn) / 2 as a from customers) select a from w',
    ]) assert.ok(computed(sql).has(SSN), sql);
  });
  it('lets references and expressions that cannot fail pass', () => {
    for (const sql of [
      'select c.ssn as harmless from customers c',
      'select ssn::text as s from customers',
      "select 'x' || ssn from customers",
      'select upper(ssn), lower(ssn), concat(ssn, name) from customers',
      'select row_to_json(c), to_jsonb(c) from customers c',
      'select c.*, c from customers c',
      "select string_agg(ssn, ','), count(ssn), json_agg(c.*) from customers c",
      'select name from customers union select ssn from customers',
      'select (select ssn from customers limit 1)',
      'select s.x from (select ssn as x from customers) s',
    ]) assert.ok(!computed(sql).has(SSN) && !computed(sql).has('public.customers.*'), sql);
  });
});
