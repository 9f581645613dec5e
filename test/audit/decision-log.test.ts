import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { copyLine, parseCopyLine } from '../../pdp-server/src/audit/copy-format.js';
import { openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import { DecisionPartitions, partitionName } from '../../pdp-server/src/store/decision-partitions.js';
import { entry } from './sample-entry.js';
import { BACKENDS, openTestDb, silentLog, tempDir, testConfig, type TestDb } from './test-backends.js';

async function count(db: Db): Promise<number> {
  const r = await db.query<{ n: string | number }>('SELECT count(*) AS n FROM decision_log');
  return Number(r.rows[0]!.n);
}

for (const backend of BACKENDS) {
  describe(`decision log (${backend})`, () => {
    let t: TestDb;
    before(async () => {
      t = await openTestDb(backend);
    });
    after(async () => {
      await t.cleanup();
    });

    it('stores every appended entry with its fields, in daily partitions', async () => {
      const tmp = await tempDir('sg-dlog-');
      try {
        const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        const before = await count(t.db);
        const yesterday = new Date(Date.now() - 86_400_000).toISOString();
        const entries = [
          ...Array.from({ length: 250 }, () => entry()),
          entry({ time: yesterday, effect: 'deny', reasons: ['no scope'], code: 'token_revoked', request_summary: null }),
        ];
        for (const e of entries) log.append(e);
        await log.flush();
        assert.equal(await count(t.db), before + entries.length);
        const last = entries.at(-1)!;
        const r = await t.db.query<Record<string, unknown>>('SELECT * FROM decision_log WHERE decision_id = $1', [last.decision_id]);
        const row = r.rows[0]!;
        assert.equal(row.effect, 'deny');
        assert.deepEqual(row.reasons, ['no scope']);
        assert.equal(row.code, 'token_revoked');
        assert.equal(row.request_summary, null);
        assert.equal(row.instance, 'test-pdp');
        assert.equal(row.event, 'decision');
        assert.equal((row.time as Date).toISOString(), yesterday);
        const days = await new DecisionPartitions(t.db).list();
        assert.ok(days.includes(yesterday.slice(0, 10)), 'partition for yesterday created on demand');
        assert.equal(log.stats().pendingSegments, 0);
        assert.deepEqual(await readdir(path.join(tmp.dir, 'spool')), [], 'committed segments are removed');
        await log.close();
      } finally {
        await tmp.cleanup();
      }
    });

    it('stores text with tabs, newlines, backslashes and quotes exactly (COPY escaping)', async () => {
      const tmp = await tempDir('sg-dlog-');
      try {
        const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        const tricky = 'a\tb\nc\\d"e\r{f},g\\N';
        const e = entry({ reasons: [tricky, 'plain'], subject: tricky, request_summary: { note: tricky, n: [1, 2] } });
        await log.append(e);
        await log.flush();
        const r = await t.db.query<Record<string, unknown>>('SELECT subject, reasons, request_summary FROM decision_log WHERE decision_id = $1', [e.decision_id]);
        const row = r.rows[0]!;
        assert.equal(row.subject, tricky);
        assert.deepEqual(row.reasons, [tricky, 'plain']);
        assert.deepEqual(row.request_summary, { note: tricky, n: [1, 2] });
        await log.close();
      } finally {
        await tmp.cleanup();
      }
    });

    it('replaces NUL characters (Postgres stores none) instead of stalling the log on them', async () => {
      const tmp = await tempDir('sg-dlog-');
      try {
        const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        const bad = entry({ subject: 'a\0b', session_id: 'nul-test', reasons: ['r\0'], request_summary: { ['k\0']: 'v\0', n: ['\0'] } });
        const after = entry({ session_id: 'nul-test' });
        log.append(bad);
        log.append(after);
        await log.flush();
        assert.equal(log.stats().outage, false);
        const r = await t.db.query<Record<string, unknown>>("SELECT decision_id, subject, reasons, request_summary FROM decision_log WHERE session_id = 'nul-test' ORDER BY time, decision_id");
        const byId = new Map(r.rows.map((x) => [x.decision_id, x]));
        assert.equal(byId.size, 2);
        const stored = byId.get(bad.decision_id)!;
        assert.equal(stored.subject, 'a\uFFFDb');
        assert.deepEqual(stored.reasons, ['r\uFFFD']);
        assert.deepEqual(stored.request_summary, { ['k\uFFFD']: 'v\uFFFD', n: ['\uFFFD'] });
        assert.ok(byId.has(after.decision_id));
        await log.close();
      } finally {
        await tmp.cleanup();
      }
    });

    it('is idempotent by (time, decision_id)', async () => {
      const tmp = await tempDir('sg-dlog-');
      try {
        const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        const before = await count(t.db);
        const e = entry();
        log.append(e);
        log.append({ ...e });
        await log.flush();
        assert.equal(await count(t.db), before + 1);
        assert.equal(log.stats().duplicates, 1);
        await log.close();
      } finally {
        await tmp.cleanup();
      }
    });

    it('spools while the database is unreachable and replays exactly once on the next start', async () => {
      const tmp = await tempDir('sg-dlog-');
      // A database that cannot be reached: a Postgres port nobody listens on (the backend under
      // test is the one the spool is replayed into).
      const dead: Db = await openPostgres('postgres://postgres@127.0.0.1:1/none', silentLog);
      try {
        const down = await createDecisionLog(dead, testConfig(tmp.dir), silentLog, { batchSize: 40 });
        const entries = Array.from({ length: 130 }, () => entry({ session_id: 'spooled' }));
        for (const e of entries) down.append(e);
        await down.flush();
        assert.equal(down.stats().outage, true);
        assert.ok(down.stats().pendingSegments > 0);
        await down.close();
        await dead.close();

        // Simulate a crash after COMMIT but before the segment was deleted: the first 10 entries
        // are already in the database and must not be inserted twice.
        const preDir = await tempDir('sg-dlog-pre-');
        const pre = await createDecisionLog(t.db, testConfig(preDir.dir), silentLog);
        for (const e of entries.slice(0, 10)) pre.append(e);
        await pre.close();
        await preDir.cleanup();

        const before = await count(t.db);
        const up = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        await up.flush();
        assert.equal(await count(t.db), before + entries.length - 10);
        const r = await t.db.query<{ n: string | number }>("SELECT count(*) AS n FROM decision_log WHERE session_id = 'spooled'");
        assert.equal(Number(r.rows[0]!.n), entries.length);
        assert.equal(up.stats().duplicates, 10);
        assert.deepEqual(await readdir(path.join(tmp.dir, 'spool')), []);
        await up.close();
      } finally {
        await tmp.cleanup();
      }
    });

    it('skips a torn last line left by a killed process', async () => {
      const tmp = await tempDir('sg-dlog-');
      try {
        const good = entry({ session_id: 'torn-test' });
        const { mkdir } = await import('node:fs/promises');
        await mkdir(path.join(tmp.dir, 'spool'));
        await writeFile(
          path.join(tmp.dir, 'spool', 'seg-0000000000000007.rows'),
          // As a killed writer leaves it: a whole line, a torn one, then the zeros the file was extended with.
          copyLine(good, 'test', JSON.stringify(good.request_summary)) + copyLine(entry(), 'test', '{}').slice(0, 40) + '\0'.repeat(4096),
        );
        const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog);
        await log.flush();
        const r = await t.db.query("SELECT decision_id FROM decision_log WHERE session_id = 'torn-test'");
        assert.deepEqual(r.rows.map((x) => x.decision_id), [good.decision_id]);
        assert.equal(log.stats().tornLines, 1);
        await log.close();
      } finally {
        await tmp.cleanup();
      }
    });

    if (backend === 'postgres') {
      it('streams rows into an open COPY; a COPY cut off mid-way is replayed exactly once', async () => {
        const tmp = await tempDir('sg-dlog-');
        try {
          const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog, { commitIntervalMs: 60_000, streamWriteMs: 1 });
          const first = Array.from({ length: 50 }, () => entry({ session_id: 'stream-cut' }));
          for (const e of first) await log.append(e);
          // The live COPY's backend is visible while the segment is open: kill it.
          let killed = 0;
          for (let i = 0; i < 200 && killed === 0; i++) {
            const r = await t.db.query<{ ok: boolean }>(
              "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query LIKE 'COPY decision_log%' AND pid <> pg_backend_pid() AND datname = current_database()",
            );
            killed = r.rows.filter((x) => x.ok).length;
            if (killed === 0) await new Promise((resolve) => setTimeout(resolve, 10));
          }
          assert.equal(killed, 1, 'one streaming COPY was open');
          const second = Array.from({ length: 50 }, () => entry({ session_id: 'stream-cut' }));
          for (const e of second) await log.append(e);
          await log.flush();
          const r = await t.db.query<{ n: string }>("SELECT count(DISTINCT decision_id) AS n, count(*) AS total FROM decision_log WHERE session_id = 'stream-cut'");
          assert.equal(Number(r.rows[0]!.n), 100);
          assert.equal(Number((r.rows[0] as unknown as { total: string }).total), 100);
          assert.deepEqual(await readdir(path.join(tmp.dir, 'spool')), []);
          await log.close();
        } finally {
          await tmp.cleanup();
        }
      });

      it('streams around a row for a day without a partition yet, and stores every row', async () => {
        const tmp = await tempDir('sg-dlog-');
        try {
          const log = await createDecisionLog(t.db, testConfig(tmp.dir), silentLog, { commitIntervalMs: 60_000 });
          const rows = [entry({ session_id: 'stream-day' }), entry({ session_id: 'stream-day', time: '2031-02-03T04:05:06.000Z' }), entry({ session_id: 'stream-day' })];
          for (const e of rows) await log.append(e);
          await log.flush();
          const r = await t.db.query<{ decision_id: string }>("SELECT decision_id FROM decision_log WHERE session_id = 'stream-day' ORDER BY time");
          assert.deepEqual(r.rows.map((x) => x.decision_id).sort(), rows.map((e) => e.decision_id).sort());
          assert.ok((await new DecisionPartitions(t.db).list()).includes('2031-02-03'));
          await log.close();
        } finally {
          await tmp.cleanup();
        }
      });
    }

    it('drops partitions older than the retention period', async () => {
      const parts = new DecisionPartitions(t.db);
      const now = new Date('2030-03-31T12:00:00Z');
      await parts.ensure(['2030-01-01', '2030-02-28', '2030-03-01', '2030-03-31']);
      // 30 days before 2030-03-31T12:00Z is 2030-03-01T12:00Z: that day still holds retained rows.
      const dropped = await parts.dropExpired(30, now);
      assert.ok(dropped.includes('2030-01-01') && dropped.includes('2030-02-28'));
      const left = await parts.list();
      assert.ok(!left.includes('2030-01-01') && !left.includes('2030-02-28'));
      assert.ok(left.includes('2030-03-01') && left.includes('2030-03-31'));
      const reg = await t.db.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [partitionName('2030-02-28')]);
      assert.equal(reg.rows[0]!.r, null);
      await parts.dropExpired(0, new Date('2030-04-05T00:00:00Z'));
    });
  });
}

describe('decision log COPY rows', () => {
  it('decode back to the entry they encode, whatever the text holds', () => {
    const tricky = 'a\tb\nc\\d"e\r{f},g\\N \\t';
    const e = entry({ reasons: [tricky, '', 'x"y'], subject: tricky, chain: null, request_summary: { note: tricky, n: [1, 2] }, event: 'approval.approved', cache_hit: true });
    const line = copyLine(e, 'inst', JSON.stringify(e.request_summary));
    assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'));
    assert.deepEqual(parseCopyLine(line.slice(0, -1)), e);
  });

  it('refuses lines that are not a whole row', () => {
    const line = copyLine(entry(), 'inst', '{}').slice(0, -1);
    assert.equal(parseCopyLine(line.slice(0, 60)), undefined);
    assert.equal(parseCopyLine(line.replace('\tallow\t', '\tmaybe\t')), undefined);
    assert.equal(parseCopyLine(line + '\textra'), undefined);
    assert.equal(parseCopyLine(''), undefined);
  });
});
