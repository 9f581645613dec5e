/**
 * Sustained decision-log ingest into real Postgres: appends N entries as fast as the event
 * loop allows (yielding every 1000 like a busy server), then flushes, and prints rows/s and
 * the cost of one append on the caller. Uses a fresh database on DATABASE_URL's server
 * (default: the local shared Postgres), dropped afterwards.
 *
 *   npx tsx bench/decision-log/ingest-bench.ts [rows=200000]
 */
import { performance } from 'node:perf_hooks';
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { migrate, openPostgres } from '../../pdp-server/src/store/db.js';
import { createPgDatabase, silentLog, tempDir, testConfig } from '../../test/audit/test-backends.js';
import { entry } from '../../test/audit/sample-entry.js';

const rows = Number(process.argv[2] ?? 200_000);
const created = await createPgDatabase();
const db = await openPostgres(created.url, silentLog);
await migrate(db);
const tmp = await tempDir('sg-bench-');
try {
  const log = await createDecisionLog(db, testConfig(tmp.dir), silentLog);
  const sample = Array.from({ length: 1000 }, () => entry());
  let appendNs = 0n;
  const t0 = performance.now();
  for (let i = 0; i < rows; i++) {
    const e = { ...sample[i % 1000]!, decision_id: `${i}-${sample[i % 1000]!.decision_id}` };
    const a = process.hrtime.bigint();
    log.append(e);
    appendNs += process.hrtime.bigint() - a;
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  const tAppended = performance.now();
  await log.flush();
  const t1 = performance.now();
  const n = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM decision_log')).rows[0]!.n);
  await log.close();
  console.log(JSON.stringify({
    rows_appended: rows,
    rows_in_postgres: n,
    seconds: +((t1 - t0) / 1000).toFixed(2),
    rows_per_s: Math.round(n / ((t1 - t0) / 1000)),
    append_phase_s: +((tAppended - t0) / 1000).toFixed(2),
    mean_append_us: +(Number(appendNs / BigInt(rows)) / 1000).toFixed(2),
  }, null, 2));
} finally {
  await db.close();
  await created.drop();
  await tmp.cleanup();
}
