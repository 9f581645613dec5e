/**
 * The database side of a logging PDP, without the PDP: streams decision-log rows into
 * Postgres the way the writer's live COPY does (rows sent every 50 ms, committed every 250 ms),
 * at a steady rate, so Postgres ingests what a logging server at that rate makes it ingest.
 * It does nothing else (no spool, no entries built per decision), so its own CPU stays small.
 * decide-p99 `--equal-db-load` runs it beside the server that does not log, at idle CPU
 * priority, so that both servers' load generators share their CPU with the same database
 * work and only the PDP's own part of logging differs between them.
 *
 *   npx tsx bench/decision-log/db-load.ts <database-url> <rows-per-second>
 */
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { COPY_SQL, copyLine } from '../../pdp-server/src/audit/copy-format.js';
import { DEFAULT_DECISION_LOG_OPTIONS } from '../../pdp-server/src/audit/decision-log.js';
import { newDecisionId } from '../../pdp-server/src/audit/decision-id.js';
import { openPostgres, type CopyStream } from '../../pdp-server/src/store/db.js';
import { DecisionPartitions } from '../../pdp-server/src/store/decision-partitions.js';

const [url, rateArg] = process.argv.slice(2);
const rate = Number(rateArg);
if (!url || !(rate > 0)) throw new Error('usage: db-load.ts <database-url> <rows-per-second>');
const db = await openPostgres(url, pino({ level: 'warn' }) as unknown as FastifyBaseLogger);
await new DecisionPartitions(db).ensureAhead();

// The shape of decide-p99's requests (bench/pdp-vs-opa/workload.ts), so rows are the same size.
const SUMMARY = JSON.stringify({ sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: ['public.orders.id', 'public.orders.email', 'public.orders.created_at'], functions: ['count'] }] } });
let n = 0;
function rows(count: number): string {
  let out = '';
  for (let i = 0; i < count; i++) {
    out += copyLine(
      {
        decision_id: newDecisionId(), time: new Date().toISOString(),
        subject: 'bench', issuer: 'scopegate', jti: null, chain: 'bench', step: 'lookup', session_id: `bench-${n++ % 1000}`, shim: 'bench',
        resource_kind: 'sql', resource_name: 'orders-db', request_summary: null, effect: 'allow',
        reasons: ['scope sql:orders-db:select:public.orders'], code: null, policy_revision: 'bench', latency_us: 50, cache_hit: true, approval_id: null,
      },
      'db-load',
      SUMMARY,
    );
  }
  return out;
}

const { streamWriteMs, commitIntervalMs } = DEFAULT_DECISION_LOG_OPTIONS;
let copy: CopyStream = db.openCopy!(COPY_SQL);
let owed = 0;
let sinceCommit = 0;
/** COPYs being committed. */
const ending = new Set<Promise<void>>();
const timer = setInterval(() => {
  owed += (rate * streamWriteMs) / 1000;
  const count = Math.floor(owed);
  owed -= count;
  copy.write(rows(count));
  sinceCommit += streamWriteMs;
  if (sinceCommit >= commitIntervalMs) {
    sinceCommit = 0;
    const done = copy.end();
    ending.add(done);
    void done.finally(() => ending.delete(done));
    copy = db.openCopy!(COPY_SQL);
  }
}, streamWriteMs);

process.once('SIGTERM', () => {
  clearInterval(timer);
  void Promise.all([copy.end(), ...ending])
    .then(() => db.close())
    .finally(() => process.exit(0));
});
