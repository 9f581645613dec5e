/**
 * The pg-proxy end to end: real Postgres, the real PDP with the default policy, real
 * clients (node-postgres simple and prepared, psql, pgbench) and raw protocol frames.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { encodeStartup } from '../../shims/pg-proxy/src/wire-codec.js';
import { queryError, sendCancel, startHarness, type Harness } from './harness.js';

let h: Harness;
let reader: pg.Client;
let readerToken: string;

before(async () => {
  h = await startHarness({ startupTimeoutMs: 1500, maxMessageBytes: 1024 * 1024 });
  readerToken = await h.token(['sql:orders-db:select:public.*']);
  reader = await h.client(readerToken);
});
after(() => h?.close());

describe('pg-proxy: decisions', () => {
  it('answers allowed statements (simple and prepared)', async () => {
    assert.deepEqual((await reader.query('select id, total::text from orders order by id')).rows, [
      { id: 10, total: '9.5' },
      { id: 11, total: '20' },
    ]);
    const r = await reader.query({ name: 'by-id', text: 'select note from orders where id = $1', values: [11] });
    assert.deepEqual(r.rows, [{ note: 'second' }]);
    const again = await reader.query({ name: 'by-id', text: 'select note from orders where id = $1', values: [10] });
    assert.deepEqual(again.rows, [{ note: 'first' }]);
  });
  it('denies with SQLSTATE 42501 naming the decision id, and the session keeps working', async () => {
    const e = await queryError(reader, 'delete from orders');
    assert.equal(e.code, '42501');
    assert.match(e.message, /decision_id=[0-9a-f-]{36}/);
    const p = await queryError(reader, 'update orders set note = $1', ['x']);
    assert.equal(p.code, '42501');
    assert.equal((await reader.query('select count(*)::int as n from orders')).rows[0].n, 2);
  });
  it('denies what does not parse and dangerous constructs', async () => {
    assert.equal((await queryError(reader, 'selec 1')).code, '42501');
    assert.equal((await queryError(reader, "select pg_read_file('/etc/passwd')")).code, '42501');
    assert.equal((await queryError(reader, 'set search_path = pg_temp, public')).code, '42501');
    assert.equal((await queryError(reader, "copy orders to program 'id'")).code, '42501');
    assert.equal((await queryError(reader, 'do $$ begin null; end $$')).code, '42501');
  });
  it('aborts the transaction on a denial, like a real error', async () => {
    const writer = await h.client(await h.token(['sql:orders-db:*:public.orders']));
    await writer.query('begin');
    await writer.query("update orders set note = 'changed' where id = 10");
    assert.equal((await queryError(writer, 'select ssn from customers')).code, '42501');
    assert.equal((await queryError(writer, 'select 1')).code, '25P02');
    await writer.query('rollback');
    assert.equal((await reader.query('select note from orders where id = 10')).rows[0].note, 'first');
  });
  it('refuses a malformed token at login (28P01)', async () => {
    await assert.rejects(h.client('not-a-token'), (e: { code?: string; message: string }) => e.code === '28P01' && /token_malformed/.test(e.message));
  });
  it('logs every decision with the session id', () => {
    const decisions = h.events.filter((e) => e.event === 'decision');
    assert.ok(decisions.length > 0);
    assert.ok(decisions.every((e) => typeof e.session_id === 'string' && typeof e.decision_id === 'string'));
    assert.ok(!JSON.stringify(h.events).includes(readerToken), 'the token is never logged');
  });
});

/** A decision as the query API returns it, once the log writer has stored it (it writes in batches). */
async function loggedDecision(id: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await h.pdp.app.inject({ method: 'GET', url: `/v1/decisions/${id}`, headers: { authorization: `Bearer ${h.pdp.auditorKey}` } });
    if (r.statusCode === 200) return r.body;
    if (r.statusCode !== 404 || i >= 200) throw new Error(`decision ${id}: ${r.statusCode} ${r.body}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('pg-proxy: masking', () => {
  const SSN = /\d{3}-\d{2}-\d{4}/;
  const leaks = (rows: unknown[]) => SSN.test(JSON.stringify(rows)) || JSON.stringify(rows).includes('ada@example.com');
  it('masks target columns by origin, in text and binary-safe placeholders', async () => {
    const r = await reader.query('select id, name, ssn, email, card_number from customers order by id');
    assert.equal(r.rows[0].name, 'Ada');
    assert.equal(r.rows[0].ssn, '[REDACTED:ssn]');
    assert.match(r.rows[0].email, /^\[HASH:[0-9a-f]{16}\]$/);
    assert.equal(r.rows[0].card_number, '****1111');
  });
  for (const sql of [
    'select c.ssn as harmless from customers c',
    'select ssn::text as s from customers',
    "select 'x' || ssn from customers",
    'select upper(ssn) from customers',
    'select row_to_json(c) from customers c',
    'select c.* from customers c',
    'select c from customers c',
    'select string_agg(ssn, \',\') from customers',
    'select name from customers union select ssn from customers',
    'select (select ssn from customers limit 1)',
    'select s.x from (select ssn as x from customers) s',
    'with x as (select ssn from customers) select ssn from x',
    'select * from orders o join customers c on c.id = o.customer_id',
    'select json_agg(c.*) from customers c',
  ]) {
    it(`does not leak through: ${sql}`, async () => {
      const r = await reader.query(sql);
      assert.ok(r.rows.length > 0);
      assert.ok(!leaks(r.rows), JSON.stringify(r.rows));
    });
  }
  // A masked column must not decide which rows come back: each of these would read its value
  // back one question at a time (an oracle), even though the column itself is never returned.
  for (const sql of [
    "select name from customers where ssn like '1%'",
    'select o.id from orders o join customers c on o.note = c.ssn',
    'select name from customers order by ssn limit 1',
    'select count(*) from customers group by ssn',
    'select count(*) from customers having max(ssn) > $$5$$',
    "select name from customers c where exists (select 1 from customers d where d.ssn like '1%' and d.id = c.id)",
    "select s.name from (select name, ssn from customers) s where s.ssn like '1%'",
    "with x as (select ssn from customers) select count(*) from x where ssn like '1%'",
    "select name from customers c where c::text like '%-%'",
    'select distinct on (ssn) name from customers',
    'select name, generate_series(1, length(ssn)) from customers',
    "select name from customers where email = 'ada@example.com'",
    'select name, ssn from customers order by 2 limit 1',
    'select name, ssn as s from customers order by s limit 1',
    'prepare by_ssn as select name from customers where ssn like $1',
    'declare by_ssn_cursor cursor with hold for select name from customers order by ssn',
  ]) {
    it(`denies a masked column that decides the rows: ${sql}`, async () => {
      const e = await queryError(reader, sql);
      assert.equal(e.code, '42501', e.message);
      // The client is told only that policy denied it; the reason is in the decision log.
      const id = /decision_id=([0-9a-f-]{36})/.exec(e.message)?.[1];
      assert.ok(id, e.message);
      assert.match(await loggedDecision(id), /masked_column_in_filter public\.customers\./);
    });
  }
  it('denies a masked column in the filter of a prepared statement, and allows filters on other columns', async () => {
    const e = await queryError(reader, 'select name from customers where ssn = $1', ['123-45-6789']);
    assert.equal(e.code, '42501');
    const r = await reader.query({ text: 'select name, ssn from customers where id = $1 order by name', values: [1] });
    assert.deepEqual(r.rows, [{ name: 'Ada', ssn: '[REDACTED:ssn]' }]);
  });
  it('masks prepared (extended protocol) results too', async () => {
    const r = await reader.query({ text: 'select ssn, name from customers where id = $1', values: [1] });
    assert.deepEqual(r.rows, [{ ssn: '[REDACTED:ssn]', name: 'Ada' }]);
    const bin = await reader.query({ text: 'select ssn, age from customers where id = $1', values: [1], binary: true } as pg.QueryConfig);
    assert.ok(!leaks(bin.rows));
  });
  it('withholds error text during a statement that reads masked columns', async () => {
    const e = await queryError(reader, 'select ssn, 1/0 from customers');
    assert.equal(e.code, '22012');
    assert.match(e.message, /withheld/);
  });
  // Whether a statement fails shows even when its text is withheld: an expression that can
  // fail on a masked value would answer a question about it, so it is refused up front.
  for (const sql of [
    'select cast(ssn as int) from customers',
    "select 1/(case when ssn like '1%' then 0 else 1 end) as x from customers where id = 1",
    "select div(1, position('1' in ssn)) from customers where id = 1",
    'select (select 1/(ascii(x) - 49) from (select ssn as x from customers) s limit 1)',
  ]) {
    it(`denies a masked column in an expression that could fail on it: ${sql}`, async () => {
      const e = await queryError(reader, sql);
      assert.equal(e.code, '42501', e.message);
      const id = /decision_id=([0-9a-f-]{36})/.exec(e.message)?.[1];
      assert.ok(id, e.message);
      assert.match(await loggedDecision(id), /masked_column_in_expression public\.customers\.ssn/);
    });
  }
  it('denies writes that read masked columns', async () => {
    const writer = await h.client(await h.token(['sql:orders-db:*:public.*']));
    assert.equal((await queryError(writer, 'update customers set name = ssn returning name')).code, '42501');
    assert.equal((await queryError(writer, 'insert into orders(id, note) select id + 100, ssn from customers')).code, '42501');
  });
  it('masks COPY text output and refuses formats it cannot mask', async () => {
    const copyToken = await h.token(['sql:orders-db:select:public.*', 'sql:orders-db:copy:public.*']);
    const psql = await run('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', '-d', 'x', '-c', 'copy customers to stdout'], {
      env: { ...process.env, PGPASSWORD: copyToken, PGSSLMODE: 'disable' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(psql.status, 0, psql.stderr);
    assert.match(psql.stdout, /^1\tAda\t\[REDACTED:ssn\]/m);
    assert.ok(!SSN.test(psql.stdout));
    const csv = await run('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', '-d', 'x', '-c', 'copy customers to stdout with (format csv)'], {
      env: { ...process.env, PGPASSWORD: copyToken, PGSSLMODE: 'disable' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.ok(!SSN.test(csv.stdout));
    assert.notEqual(csv.status, 0);
  });
});

describe('pg-proxy: clients and protocol', () => {
  it('works with psql (several statements in one query)', async () => {
    const r = await run('psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', '-d', 'x', '-c', 'select count(*) from orders; select name from customers order by id'], {
      env: { ...process.env, PGPASSWORD: readerToken, PGSSLMODE: 'disable' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '2\nAda\nBob\n');
  });
  it('runs pgbench (select-only, simple and prepared) through the proxy', async () => {
    const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: h.db });
    await admin.connect();
    await admin.query('create table pgbench_accounts (aid int primary key, bid int, abalance int, filler char(84)); insert into pgbench_accounts select g, 1, 0, \'\' from generate_series(1, 1000) g');
    await admin.query('create table pgbench_branches (bid int primary key, bbalance int, filler char(88)); insert into pgbench_branches values (1, 0, \'\')');
    await admin.end();
    const token = await h.token(['sql:orders-db:select:public.pgbench_*']);
    for (const mode of ['simple', 'prepared']) {
      const r = await run('pgbench', ['-n', '-S', '-t', '50', '-c', '2', '-M', mode, '-h', '127.0.0.1', '-p', String(h.port), '-U', 'agent', 'x'], {
        env: { ...process.env, PGPASSWORD: token, PGSSLMODE: 'disable' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /number of transactions actually processed: 100\/100/);
    }
  });
  it('keeps pipelined extended-protocol responses in order around a denial', async () => {
    const frames = Buffer.concat([
      serialize.parse({ name: '', text: 'select 1 as a', types: [] }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ name: '', text: 'select ssn from customers', types: [] }), // allowed, masked
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ name: '', text: 'delete from orders', types: [] }), // denied
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
      serialize.query('select 2'),
    ]);
    const types = await rawSession(h.port, readerToken, frames, 3);
    // No Describe was sent, so the proxy cannot see column origins: the masked batch's rows come back as NULLs.
    assert.deepEqual(types.join(''), '12DC' + '12DDC' + 'Z' + 'E' + 'Z' + 'TDCZ');
  });
  it('refuses the FunctionCall message and keeps the session', async () => {
    const fc = Buffer.from([0x46, 0, 0, 0, 12, 0, 0, 4, 0, 0, 0, 0, 0].slice(0, 13));
    fc.writeInt32BE(12, 1);
    const types = await rawSession(h.port, readerToken, Buffer.concat([fc.subarray(0, 13), serialize.query('select 1')]), 2);
    assert.deepEqual(types.join(''), 'EZTDCZ');
  });
  it('maps CancelRequest to the upstream key', async () => {
    const c = await h.client(readerToken);
    const long = c.query('select count(*) from generate_series(1, 200000000)');
    await new Promise((r) => setTimeout(r, 300));
    // What node-postgres's cancel does: a new connection sending CancelRequest with the key the proxy handed out.
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    await sendCancel(h.port, processID, secretKey);
    await assert.rejects(long, (e: { code?: string }) => e.code === '57014');
  });
  it('reaches Postgres over its Unix socket when the upstream host is a folder, cancel included', async () => {
    // libpq's convention: a host starting with "/" is the socket's folder (<folder>/.s.PGSQL.<port>).
    const socketDir = process.env.TEST_PG_SOCKET_DIR ?? '/var/run/postgresql';
    const p = await h.startProxy({ upstream: { host: socketDir, port: 5432, user: 'postgres', database: h.db } });
    const c = await p.client(readerToken);
    // Over the socket the backend sees no client address; over TCP it would be 127.0.0.1.
    assert.deepEqual((await c.query('select inet_client_addr() as a')).rows, [{ a: null }]);
    assert.equal((await c.query('select note from orders where id = 10')).rows.length, 1);
    const long = c.query('select count(*) from generate_series(1, 200000000)');
    await new Promise((r) => setTimeout(r, 300));
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    await sendCancel(p.port, processID, secretKey);
    await assert.rejects(long, (e: { code?: string }) => e.code === '57014');
  });
  it('refuses replication and options startup parameters', async () => {
    const reply = await rawBytes(h.port, encodeStartup({ user: 'x', database: 'x', replication: 'database' }));
    assert.equal(String.fromCharCode(reply[0] ?? 0), 'E');
    assert.match(reply.toString('latin1'), /0A000/);
  });
  it('answers GSSENCRequest and SSLRequest (no TLS configured) with N', async () => {
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(80877104, 4);
    assert.equal((await rawBytes(h.port, gss)).toString('latin1', 0, 1), 'N');
  });
  it('cuts off oversized messages and stalled startups', async () => {
    const big = Buffer.alloc(8);
    big.writeInt32BE(1_000_000, 0);
    big.writeInt32BE(196608, 4);
    assert.match((await rawBytes(h.port, big)).toString('latin1'), /08P01/);
    const stalled = await rawBytes(h.port, Buffer.from([0, 0]));
    assert.equal(stalled.length, 0);
  });
});

/** Open a raw session (startup + token), send frames, collect backend message types until `readyCount` ReadyForQuery. */
async function rawSession(port: number, token: string, frames: Buffer, readyCount: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let phase: 'auth' | 'run' = 'auth';
    const types: string[] = [];
    let ready = 0;
    s.on('connect', () => s.write(encodeStartup({ user: 'agent', database: 'x' })));
    s.on('error', reject);
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= buf.readInt32BE(1) + 1) {
        const type = String.fromCharCode(buf[0] as number);
        buf = buf.subarray(buf.readInt32BE(1) + 1);
        if (phase === 'auth') {
          if (type === 'R' && types.length === 0) {
            types.push('R');
            s.write(serialize.password(token));
          } else if (type === 'Z') {
            phase = 'run';
            types.length = 0;
            s.write(frames);
          }
          continue;
        }
        types.push(type);
        if (type === 'Z' && ++ready === readyCount) {
          s.end(serialize.end());
          resolve(types);
        }
      }
    });
  });
}

/** Send bytes on a fresh connection and collect everything until the proxy closes it. */
async function rawBytes(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const parts: Buffer[] = [];
    s.on('data', (d) => {
      parts.push(d);
      if (parts.length === 1 && d.length === 1) s.end();
    });
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(parts)));
  });
}

/** Run a client binary without blocking the event loop (the proxy runs in this process). */
function run(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; encoding: 'utf8'; timeout: number }): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: opts.env, encoding: 'utf8', timeout: opts.timeout }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
      resolve({ status: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}

describe('pg-proxy: fuzz', () => {
  it('survives 2000 random and mutated frames; other connections keep working', async () => {
    // Seeded PRNG (mulberry32) so a failure replays exactly.
    let seed = 0x5eed;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const valid = [
      serialize.query('select 1'),
      serialize.query('select ssn from customers'),
      serialize.parse({ name: 's1', text: 'select $1::int', types: [] }),
      serialize.bind({ statement: 's1', values: ['1'] }),
      serialize.describe({ type: 'P', name: '' }),
      serialize.execute({}),
      serialize.sync(),
      serialize.flush(),
      serialize.close({ type: 'S', name: 's1' }),
      serialize.copyData(Buffer.from('x')),
    ];
    const mutate = (b: Buffer): Buffer => {
      const c = Buffer.from(b);
      const n = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < n; i++) c[Math.floor(rand() * c.length)] = Math.floor(rand() * 256);
      return rand() < 0.2 ? c.subarray(0, Math.floor(rand() * c.length)) : c;
    };
    let sent = 0;
    for (let conn = 0; conn < 40 && sent < 2000; conn++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 50; i++, sent++) {
        const r = rand();
        if (r < 0.3) frames.push(Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))));
        else if (r < 0.7) frames.push(mutate(valid[Math.floor(rand() * valid.length)] as Buffer));
        else frames.push(valid[Math.floor(rand() * valid.length)] as Buffer);
      }
      // Half the connections authenticate first, so the fuzz reaches the post-login state machine.
      await fuzzConnection(h.port, conn % 2 === 0 ? readerToken : undefined, Buffer.concat(frames));
    }
    assert.equal(sent, 2000);
    assert.equal((await reader.query('select count(*)::int as n from orders')).rows[0].n, 2);
    const fresh = await h.client(readerToken);
    assert.equal((await fresh.query('select 1 as one')).rows[0].one, 1);
  });
});

/** Log in (optionally), write the bytes, and wait until the proxy closes or a short idle passes. */
async function fuzzConnection(port: number, token: string | undefined, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      if (idle) clearTimeout(idle);
      s.destroy();
      resolve();
    };
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(finish, 300);
    };
    let buf = Buffer.alloc(0);
    let sentFuzz = false;
    s.on('connect', () => {
      if (token) s.write(encodeStartup({ user: 'agent', database: 'x' }));
      else {
        s.write(bytes);
        sentFuzz = true;
      }
      arm();
    });
    s.on('data', (d) => {
      arm();
      if (sentFuzz) return;
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= buf.readInt32BE(1) + 1) {
        const type = String.fromCharCode(buf[0] as number);
        buf = buf.subarray(buf.readInt32BE(1) + 1);
        if (type === 'R' && token) s.write(serialize.password(token));
        if (type === 'Z' && !sentFuzz) {
          sentFuzz = true;
          s.write(bytes);
        }
      }
    });
    s.on('error', finish);
    s.on('close', finish);
  });
}
