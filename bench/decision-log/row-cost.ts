/**
 * What one decision-log row costs Postgres: backend CPU (from /proc) and WAL bytes per row
 * for a COPY of N rows into the real schema, and into variants of it, each in a fresh
 * database on DATABASE_URL's server (default: the local shared Postgres). Rows are written
 * in messages of 86 rows, what the streaming writer sends every 10 ms at ~8 600 decisions/s.
 * The variants are not options of scopegate: they show where the cost is.
 *
 *   npx tsx bench/decision-log/row-cost.ts [rows=100000]
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { COPY_SQL, copyLine } from '../../pdp-server/src/audit/copy-format.js';
import { newDecisionId } from '../../pdp-server/src/audit/decision-id.js';
import { migrate, openPostgres } from '../../pdp-server/src/store/db.js';
import { DecisionPartitions } from '../../pdp-server/src/store/decision-partitions.js';
import { createPgDatabase, silentLog } from '../../test/audit/test-backends.js';
import { entry } from '../../test/audit/sample-entry.js';

const N = Number(process.argv[2] ?? 100_000);
const ROWS_PER_MESSAGE = 86;
const PARTITIONS = `SELECT inhrelid::regclass::text AS p FROM pg_inherits WHERE inhparent = 'decision_log'::regclass`;

const variants: Array<{ name: string; prepare: (c: pg.Client) => Promise<void> }> = [
  { name: 'schema as shipped', prepare: async () => {} },
  { name: 'without the decision_id index', prepare: async (c) => void (await c.query('DROP INDEX decision_log_decision_id')) },
  {
    name: 'without any secondary index',
    prepare: async (c) => void (await c.query('DROP INDEX decision_log_decision_id, decision_log_subject_time, decision_log_session_time, decision_log_resource_time, decision_log_approval')),
  },
  { name: 'request_summary as json, not jsonb', prepare: async (c) => void (await c.query('ALTER TABLE decision_log ALTER COLUMN request_summary TYPE json')) },
  {
    name: 'unlogged partitions (no WAL)',
    prepare: async (c) => {
      for (const { p } of (await c.query<{ p: string }>(PARTITIONS)).rows) await c.query(`ALTER TABLE ${p} SET UNLOGGED`);
    },
  },
];

/** utime + stime of a process, in clock ticks (1/100 s). */
function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}

const summary = JSON.stringify({ resource: { kind: 'sql', name: 'public.orders' }, request: { command: 'select', relations: ['public.orders'] } });
console.log(`Postgres cost of ${N} decision-log rows, COPY in messages of ${ROWS_PER_MESSAGE} rows\n`);
console.log('| variant | backend CPU per row (µs) | WAL per row (bytes) |');
console.log('|---|---:|---:|');
for (const v of variants) {
  const created = await createPgDatabase();
  try {
    const db = await openPostgres(created.url, silentLog);
    await migrate(db);
    await new DecisionPartitions(db).ensureAhead();
    await db.close();
    const c = new pg.Client({ connectionString: created.url });
    await c.connect();
    try {
      await v.prepare(c);
      const pid = (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      const lines = Array.from({ length: N }, (_, i) =>
        copyLine({ ...entry(), decision_id: newDecisionId(), session_id: `bench-${i % 1000}`, resource_name: 'public.orders' }, 'bench', summary),
      );
      const wal0 = (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
      const t0 = cpuTicks(pid);
      await new Promise<void>((resolve, reject) => {
        const s = c.query(copyFrom(COPY_SQL));
        s.on('finish', resolve);
        s.on('error', reject);
        let i = 0;
        const pump = (): void => {
          while (i < N) {
            const ok = s.write(lines.slice(i, i + ROWS_PER_MESSAGE).join(''));
            i += ROWS_PER_MESSAGE;
            if (!ok) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      });
      const t1 = cpuTicks(pid);
      const wal = Number((await c.query<{ d: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text AS d', [wal0])).rows[0]!.d);
      console.log(`| ${v.name} | ${(((t1 - t0) * 10_000) / N).toFixed(1)} | ${(wal / N).toFixed(0)} |`);
    } finally {
      await c.end();
    }
  } finally {
    await created.drop();
  }
}
