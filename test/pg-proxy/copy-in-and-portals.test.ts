/**
 * COPY FROM STDIN and suspended portals through the pg-proxy: real Postgres, the real PDP
 * with the default policy, psql, node-postgres (with pg-copy-streams and pg-cursor-style
 * raw Execute row limits) and raw extended-protocol frames.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { from as copyFrom } from 'pg-copy-streams';
import { encodeStartup } from '../../shims/pg-proxy/src/wire-codec.js';
import { adminClient, queryError, startHarness, type Harness } from './harness.js';

let h: Harness;
/** May copy into public.orders: `copy` and `insert` on it, nothing else written. */
let copyToken: string;
/** May read public.orders, and copy from it, but not write it. */
let readToken: string;

before(async () => {
  h = await startHarness();
  copyToken = await h.token(['sql:orders-db:select:public.*', 'sql:orders-db:copy:public.orders', 'sql:orders-db:insert:public.orders']);
  readToken = await h.token(['sql:orders-db:select:public.*', 'sql:orders-db:copy:public.orders']);
});
after(() => h?.close());

/** Notes of the orders with ids in [from, to), read on the proxy's database directly. */
async function notesBetween(from: number, to: number): Promise<string[]> {
  const c = await adminClient(h.db);
  try {
    const r = await c.query<{ note: string }>('select note from orders where id >= $1 and id < $2 order by id', [from, to]);
    return r.rows.map((x) => x.note);
  } finally {
    await c.end();
  }
}

function psql(token: string, args: string[], stdin: string): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'psql',
      ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', '-d', 'x', ...args],
      { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: 'disable' }, encoding: 'utf8', timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
        resolve({ status: typeof code === 'number' ? code : 1, stdout, stderr });
      },
    );
    child.stdin?.end(stdin);
  });
}

describe('pg-proxy: COPY FROM STDIN', () => {
  it('psql: rows arrive when the scope allows writing the table', async () => {
    const r = await psql(copyToken, ['-c', 'copy orders (id, customer_id, total, note) from stdin'], '100\t1\t1.5\tpsql-a\n101\t2\t2.5\tpsql-b\n\\.\n');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await notesBetween(100, 200), ['psql-a', 'psql-b']);
  });
  it('psql \\copy: rows arrive too', async () => {
    const r = await psql(copyToken, ['-c', '\\copy orders (id, note) from stdin'], '200\tcopy-meta-a\n201\tcopy-meta-b\n\\.\n');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await notesBetween(200, 300), ['copy-meta-a', 'copy-meta-b']);
  });
  it('psql: denied with 42501 and nothing inserted when the scope does not allow writing', async () => {
    const r = await psql(readToken, ['-c', 'copy orders (id, note) from stdin'], '300\tdenied\n\\.\n');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /permission denied by scopegate \(decision_id=[0-9a-f-]{36}\)/);
    assert.deepEqual(await notesBetween(300, 400), []);
    // Into a table the token has no scope on at all.
    const other = await psql(copyToken, ['-c', 'copy payroll (id, name) from stdin'], '9\tintruder\n\\.\n');
    assert.notEqual(other.status, 0);
    assert.match(other.stderr, /permission denied by scopegate/);
  });
  it('node-postgres + pg-copy-streams: rows arrive, and a denied COPY inserts nothing', async () => {
    const c = await h.client(copyToken);
    const stream = c.query(copyFrom('copy orders (id, note) from stdin'));
    await pipeline(Readable.from(['400\tstream-a\n', '401\tstream-b\n']), stream);
    assert.equal(stream.rowCount, 2);
    assert.deepEqual(await notesBetween(400, 500), ['stream-a', 'stream-b']);
    // The session keeps working after COPY.
    assert.equal((await c.query('select count(*)::int as n from orders where id >= 400 and id < 500')).rows[0].n, 2);

    const ro = await h.client(readToken);
    const denied = ro.query(copyFrom('copy orders (id, note) from stdin'));
    await assert.rejects(pipeline(Readable.from(['500\tnope\n']), denied), (e: { code?: string }) => e.code === '42501');
    assert.deepEqual(await notesBetween(500, 600), []);
    assert.equal((await ro.query('select count(*)::int as n from orders where id >= 500')).rows[0].n, 0);
  });
  it('a COPY FROM that fails upstream leaves nothing behind and the session usable', async () => {
    const c = await h.client(copyToken);
    const stream = c.query(copyFrom('copy orders (id, note) from stdin'));
    // Duplicate primary key: Postgres rejects the whole COPY.
    await assert.rejects(pipeline(Readable.from(['600\tdup\n', '600\tdup\n']), stream), (e: { code?: string }) => e.code === '23505');
    assert.deepEqual(await notesBetween(600, 700), []);
    assert.equal((await queryError(c, 'delete from payroll')).code, '42501');
    assert.equal((await c.query('select 1 as one')).rows[0].one, 1);
  });
});

interface RawMessage {
  type: string;
  body: Buffer;
}

/** Log in with the token on a raw socket, send frames, collect backend messages until `readyCount` ReadyForQuery. */
function rawSession(token: string, frames: Buffer, readyCount: number): Promise<RawMessage[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(h.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let running = false;
    const out: RawMessage[] = [];
    let ready = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`timed out; got ${out.map((m) => m.type).join('')}`));
    }, 15_000);
    s.on('connect', () => s.write(encodeStartup({ user: 'agent', database: 'x' })));
    s.on('error', reject);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= buf.readInt32BE(1) + 1) {
        const type = String.fromCharCode(buf[0] as number);
        const body = buf.subarray(5, buf.readInt32BE(1) + 1);
        buf = buf.subarray(buf.readInt32BE(1) + 1);
        if (!running) {
          if (type === 'R' && body.readInt32BE(0) === 3) s.write(serialize.password(token));
          else if (type === 'Z') {
            running = true;
            s.write(frames);
          }
          continue;
        }
        out.push({ type, body });
        if (type === 'Z' && ++ready === readyCount) {
          clearTimeout(timer);
          s.end(serialize.end());
          resolve(out);
        }
      }
    });
  });
}

/** Text values of a DataRow body. */
function dataRowValues(body: Buffer): Array<string | null> {
  const n = body.readInt16BE(0);
  const values: Array<string | null> = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) values.push(null);
    else {
      values.push(body.toString('utf8', at, at + len));
      at += len;
    }
  }
  return values;
}

const SSN = /\d{3}-\d{2}-\d{4}/;

describe('pg-proxy: named portals and PortalSuspended', () => {
  before(async () => {
    const c = await adminClient(h.db);
    await c.query("insert into customers (id, name, ssn) select g, 'n' || g, lpad(g::text, 3, '0') || '-12-3456' from generate_series(10, 19) g");
    await c.end();
  });

  it('masks every DataRow of every Execute of a suspended portal', async () => {
    const token = await h.token(['sql:orders-db:select:public.*']);
    const frames = Buffer.concat([
      serialize.parse({ name: 'masked', text: 'select id, ssn from customers order by id', types: [] }),
      serialize.bind({ statement: 'masked', portal: 'p1' }),
      serialize.describe({ type: 'P', name: 'p1' }),
      serialize.execute({ portal: 'p1', rows: 3 }),
      serialize.execute({ portal: 'p1', rows: 3 }),
      serialize.sync(),
      serialize.execute({ portal: 'p1', rows: 100 }),
      serialize.sync(),
    ]);
    const msgs = await rawSession(token, frames, 2);
    const types = msgs.map((m) => m.type).join('');
    // Parse, Bind, RowDescription, 3 rows + suspended, 3 rows + suspended, Z; then the portal
    // is gone (unnamed-transaction end closes it): an error, Z.
    assert.match(types, /^12TDDDsDDDsZ/);
    const rows = msgs.filter((m) => m.type === 'D').map((m) => dataRowValues(m.body));
    assert.equal(rows.length, 6);
    for (const [, ssn] of rows) assert.ok(typeof ssn === 'string' && !SSN.test(ssn), String(ssn));
  });

  it('keeps each portal on its own statement plan when portals interleave', async () => {
    const token = await h.token(['sql:orders-db:select:public.*']);
    const frames = Buffer.concat([
      serialize.query('begin'),
      serialize.parse({ name: 'masked', text: 'select ssn, id from customers order by id', types: [] }),
      serialize.parse({ name: 'plain', text: 'select note, id from orders order by id', types: [] }),
      serialize.bind({ statement: 'masked', portal: 'pm' }),
      serialize.bind({ statement: 'plain', portal: 'pp' }),
      serialize.describe({ type: 'P', name: 'pm' }),
      serialize.describe({ type: 'P', name: 'pp' }),
      // The last RowDescription seen is the plain portal's; the masked rows must still be masked.
      serialize.execute({ portal: 'pm', rows: 2 }),
      serialize.execute({ portal: 'pp', rows: 1 }),
      serialize.execute({ portal: 'pm', rows: 2 }),
      serialize.sync(),
      // A later batch, no Describe at all: continue the masked portal.
      serialize.execute({ portal: 'pm', rows: 2 }),
      serialize.execute({ portal: 'pp', rows: 5 }),
      serialize.sync(),
      serialize.query('commit'),
    ]);
    const msgs = await rawSession(token, frames, 4);
    assert.ok(!msgs.some((m) => m.type === 'E'), msgs.map((m) => m.type).join(''));
    // Rows come back in order: pm×2, pp×1, pm×2 | pm×2, pp×rest (other tests may have added orders).
    const rows = msgs.filter((m) => m.type === 'D').map((m) => dataRowValues(m.body));
    assert.ok(rows.length >= 8, JSON.stringify(rows));
    const masked = [...rows.slice(0, 2), ...rows.slice(3, 5), ...rows.slice(5, 7)];
    for (const [ssn, id] of masked) {
      assert.ok(typeof ssn === 'string' && !SSN.test(ssn), `ssn leaked: ${String(ssn)}`);
      assert.match(String(id), /^\d+$/, 'the unmasked id column of the masked portal is intact');
    }
    // The plain portal's rows are not touched by the masked plan.
    assert.deepEqual(rows[2], ['first', '10']);
    assert.deepEqual(rows[7], ['second', '11']);
    for (const row of rows.slice(7)) assert.ok(row.every((v) => v !== null), 'plain rows are not withheld');
  });

  it('withholds the rows of a portal the proxy did not bind (a SQL cursor reached by Execute)', async () => {
    const token = await h.token(['sql:orders-db:select:public.*']);
    const frames = Buffer.concat([
      serialize.query('begin'),
      serialize.query('declare sqlcur cursor for select ssn from customers order by id'),
      serialize.execute({ portal: 'sqlcur', rows: 2 }),
      serialize.sync(),
      serialize.query('commit'),
    ]);
    const msgs = await rawSession(token, frames, 4);
    const rows = msgs.filter((m) => m.type === 'D').map((m) => dataRowValues(m.body));
    assert.ok(rows.length > 0, msgs.map((m) => m.type).join(''));
    assert.ok(rows.every((r) => r.every((v) => v === null)), JSON.stringify(rows));
  });

  it('node-postgres: Execute with a row limit through a named portal stays masked', async () => {
    const c = await h.client(await h.token(['sql:orders-db:select:public.*']));
    await c.query('begin');
    await c.query('declare cur cursor for select id, ssn from customers order by id');
    const seen: Array<{ id: number; ssn: string }> = [];
    for (let i = 0; i < 10; i++) {
      const r = await c.query<{ id: number; ssn: string }>('fetch 4 from cur');
      if (r.rows.length === 0) break;
      seen.push(...r.rows);
    }
    await c.query('commit');
    assert.equal(seen.length, 12);
    assert.ok(!seen.some((r) => SSN.test(r.ssn)), JSON.stringify(seen));
  });
});
