/**
 * The normalized-statement summary cache: the literal-key lexer gives up on everything it
 * does not fully understand, texts that differ only in constants share a key and a summary,
 * only summaries proven independent of constants and session are stored, and the cached
 * path always answers exactly what the uncached summariser answers.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { literalKey } from '../../shims/pg-proxy/src/literal-key.js';
import { loadSqlParser, newSessionObjects, summarize, type SummaryResult } from '../../shims/pg-proxy/src/sql-summary.js';
import { SummaryCache } from '../../shims/pg-proxy/src/summary-cache.js';
import { withOtherLiterals } from './literal-variants.js';

before(() => loadSqlParser());

const comparable = (r: SummaryResult) => (r.ok ? { ok: true, statements: r.statements, fingerprint: r.fingerprint } : { ok: false, reason: r.reason });

describe('literal key: bails out on what it does not fully understand', () => {
  const bails: Array<[string, string]> = [
    ['line comment', "select 1 -- ' trailing"],
    ['block comment', "select /* ' */ 1"],
    ['backslash in a string', "select 'a\\' from t"],
    ['backslash outside a string', 'select 1 \\g'],
    ['dollar quoting', 'select $$ x $$'],
    ['tagged dollar quoting', 'select $q$ x $q$'],
    ['$ inside an identifier', 'select a$b from t'],
    ['$ parameter glued to an identifier char', 'select $1a'],
    ['E string', "select E'x'"],
    ['B string', "select B'101'"],
    ['X string', "select X'ff'"],
    ['N string', "select N'x'"],
    ['U& string', "select U&'x'"],
    ['U& identifier', 'select U&"x" from t'],
    ['lower-case e string', "select e'\\n'"],
    ['non-ASCII', "select 'é'"],
    ['non-ASCII identifier', 'select ö from t'],
    ['control character', 'select 1\u0000'],
    ['hex integer', 'select 0x1f'],
    ['underscore in a number', 'select 1_000'],
    ['number glued to an identifier', 'select 1a'],
    ['second dot', 'select 1.2.3'],
    ['double dot', 'select 1..2'],
    ['dangling exponent', 'select 1e'],
    ['unterminated string', "select 'abc"],
    ['unterminated quoted identifier', 'select "abc'],
    ['number after a dot', 'select t.5'],
  ];
  for (const [what, sql] of bails) {
    it(what, () => assert.equal(literalKey(sql), undefined, sql));
  }
  it('keeps everything but literal contents verbatim', () => {
    const k = literalKey(`select "a'b", x1, $12 from t where s = 'it''s' and n in (-5, 1.5e3, 42)`);
    assert.ok(k);
    assert.equal(k.key, `select "a'b", x1, $12 from t where s = \u0000s and n in (-\u0000i, \u0000f, \u0000i)`);
    assert.deepEqual(
      k.literals.map((l) => l.kind),
      ['s', 'i', 'f', 'i'],
    );
  });
  it('gives texts differing only in literal values one key, and everything else another', () => {
    const key = (s: string) => literalKey(s)?.key;
    assert.equal(key("select * from t where a = 1 and b = 'x'"), key("select * from t where a = 99 and b = 'it''s longer'"));
    assert.notEqual(key('select * from t where a = 1'), key('select * from u where a = 1'));
    assert.notEqual(key('select * from t where a = 1'), key('select * from t where a  = 1'));
    assert.notEqual(key('select * from t where a = 1'), key('select * from t where A = 1'));
    // The lexical class is part of the key: scan.l turns each into a different token.
    assert.notEqual(key('select 1'), key('select 1.0'));
    assert.notEqual(key('select 1'), key('select 99999999999'));
    assert.notEqual(key('select 1'), key("select '1'"));
  });
});

describe('summary cache', () => {
  it('shares one summary between texts that differ only in constants', () => {
    const cache = new SummaryCache(100);
    const s = newSessionObjects();
    const a = cache.summarize("select ssn from customers where id = 1 and name = 'Ada'", s);
    const b = cache.summarize("select ssn from customers where id = 2 and name = 'Bob'", s);
    assert.ok(a.ok && b.ok);
    assert.deepEqual(cache.stats(), { hits: 1, misses: 1, uncacheable: 0, size: 1 });
    assert.equal(b.statements, a.statements);
    assert.equal(b.fingerprint, a.fingerprint);
    assert.deepEqual(comparable(b), comparable(summarize("select ssn from customers where id = 2 and name = 'Bob'", s)));
    assert.ok(Object.isFrozen(a.statements) && Object.isFrozen(a.statements[0]) && Object.isFrozen(a.statements[0]?.columns));
  });
  it('stores nothing for statements that are not plain DML, touch the session, or hide a non-constant literal', () => {
    const notStored = [
      "copy customers to stdout with (format 'csv')",
      "set statement_timeout = '1s'",
      'explain select * from customers where id = 1',
      "prepare p as select * from customers where id = 1",
      "declare c cursor for select * from customers where id = 1",
      "merge into orders o using customers c on o.customer_id = c.id when matched then update set note = 'x'",
      "update orders set note = 'x' where current of c",
      'fetch 5 from c',
      "select 1 from customers; set work_mem = '64MB'",
      // Two strings on separate lines are one constant: the second token is no A_Const.
      "select 'a'\n'b' from customers",
    ];
    for (const sql of notStored) {
      const cache = new SummaryCache(100);
      const s = newSessionObjects();
      s.cursors.set('c', [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }]);
      cache.summarize(sql, s);
      assert.equal(cache.stats().size, 0, `${sql} must not be cached`);
    }
  });
  it('verifies that every replaced literal is a constant of the parse (negated numbers included)', () => {
    const cache = new SummaryCache(100);
    const s = newSessionObjects();
    for (const sql of ['select * from orders where total > -5 and id = - 3', 'select * from orders order by id fetch first 5 rows only', "select interval '1' second(3)"]) {
      cache.summarize(sql, s);
    }
    assert.equal(cache.stats().size, 3);
  });
  it('stores transaction control, but not when it carries a literal that is no constant', () => {
    const cache = new SummaryCache(100);
    const s = newSessionObjects();
    for (const sql of ['BEGIN;', 'END;', 'begin isolation level serializable', 'savepoint s1', 'rollback to savepoint s1']) cache.summarize(sql, s);
    assert.equal(cache.stats().size, 5);
    const gid = cache.summarize("commit prepared 'tx1'", s);
    assert.ok(gid.ok);
    assert.equal(cache.stats().size, 5, 'the gid is a plain string in the tree, not an A_Const');
    assert.equal(cache.summarize('END;', s).ok && cache.stats().hits, 1);
  });
  it('evicts the least recently used entry beyond its bound', () => {
    const cache = new SummaryCache(2);
    const s = newSessionObjects();
    cache.summarize('select * from orders where id = 1', s);
    cache.summarize('select * from customers where id = 1', s);
    cache.summarize('select * from orders where id = 2', s); // hit: orders becomes most recent
    cache.summarize('select * from payroll where id = 1', s); // evicts customers
    cache.summarize('select * from orders where id = 3', s);
    assert.deepEqual(cache.stats(), { hits: 2, misses: 3, uncacheable: 0, size: 2 });
  });
  it('size 0 turns it off', () => {
    const cache = new SummaryCache(0);
    cache.summarize('select 1', newSessionObjects());
    assert.equal(cache.stats().size, 0);
  });
});

describe('summary cache: cached and uncached paths agree (property)', () => {
  const corpus = [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
    'UPDATE pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 93;',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 48213, -4211, CURRENT_TIMESTAMP);',
    'SELECT aid, filler FROM pgbench_accounts WHERE aid = 77;',
    "select c.ssn as harmless from customers c where c.name = 'Ada'",
    "select 'x' || ssn::text from customers where id in (1, 2, 3)",
    'select string_agg(ssn, \',\') from customers where age > 30.5',
    "with x as (select ssn from customers where id = 1) select * from x where 'a' = 'a'",
    "with gone as (delete from orders where id = 10 returning *) select * from gone",
    "update customers set name = 'x' where id = 1 returning ssn",
    "select * from orders where note like 'fi%' limit 10 offset 2",
    "select * from pg_authid where rolname = 'postgres'",
    "select ssn into stolen from customers where id = 1",
    "select count(*) from customers c join orders o on o.customer_id = c.id where o.total > 9.5e0",
    "select set_config('search_path', 'evil', false)",
    "select pg_read_file('/etc/passwd')",
    "select * from customers where id = $1 and name = 'x'",
    "delete from orders where id = 1; select ssn from customers where id = 2",
    "select (select ssn from customers limit 1) where 1 = 1",
    "select * from orders order by id fetch first 5 rows only",
    "select interval '1 day' + now() from orders where total between 1 and 99999999999",
    'BEGIN;',
    'END;',
    "prepare transaction 'x1'",
    "commit prepared 'x1'",
    "insert into orders select id, 1, 2.5, 'x' from customers where ssn = '123-45-6789'",
  ];
  it('for every corpus statement and many literal variants', () => {
    const cache = new SummaryCache(1000);
    const s = newSessionObjects();
    for (const sql of corpus) {
      for (let seed = 0; seed < 5; seed++) {
        const text = withOtherLiterals(sql, seed);
        assert.deepEqual(comparable(cache.summarize(text, s)), comparable(summarize(text, s)), text);
      }
    }
    const { hits, size } = cache.stats();
    assert.ok(hits >= 4 * (size - 1), `expected the variants to hit the cache: ${JSON.stringify(cache.stats())}`);
  });
});
