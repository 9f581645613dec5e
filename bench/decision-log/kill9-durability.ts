/**
 * kill -9 durability: a child process appends decisions under load and prints each id once
 * its append returned (= answered); we SIGKILL it mid-stream, start a new writer on the same
 * data folder (a PDP restart), and count answered decisions missing from Postgres.
 *
 *   npx tsx bench/decision-log/kill9-durability.ts [rounds=3]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { migrate, openPostgres } from '../../pdp-server/src/store/db.js';
import { createPgDatabase, silentLog, tempDir, testConfig } from '../../test/audit/test-backends.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const rounds = Number(process.argv[2] ?? 3);
const created = await createPgDatabase();
const db = await openPostgres(created.url, silentLog);
await migrate(db);
const results: Array<{ answered: number; stored: number; missing: number }> = [];
try {
  for (let round = 0; round < rounds; round++) {
    const tmp = await tempDir('sg-kill9-');
    const answered = new Set<string>();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'kill9-child.ts'), created.url, tmp.dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    let ready = false;
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (l === 'ready') ready = true;
        else if (l) answered.add(l);
      }
    });
    for (let i = 0; i < 600 && !(ready && answered.size > 20_000); i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // Restart: a new writer on the same data folder replays the spool.
    const log = await createDecisionLog(db, testConfig(tmp.dir), silentLog);
    await log.flush();
    await log.close();
    const ids = [...answered];
    let stored = 0;
    for (let i = 0; i < ids.length; i += 5000) {
      const r = await db.query<{ n: string }>('SELECT count(*) AS n FROM decision_log WHERE decision_id = ANY($1)', [ids.slice(i, i + 5000)]);
      stored += Number(r.rows[0]!.n);
    }
    results.push({ answered: ids.length, stored, missing: ids.length - stored });
    await tmp.cleanup();
  }
  console.log(JSON.stringify({ rounds: results, total_missing: results.reduce((s, r) => s + r.missing, 0) }, null, 2));
} finally {
  await db.close();
  await created.drop();
}
