/**
 * Child of decision-spool-tiers.test.ts: a decision-log writer that appends `count` entries
 * with a commit interval far longer than the test, prints the decision ids once they are
 * journaled (the moment the PDP would answer), then idles until it is killed. Its segments are
 * therefore still in the spool's memory tier, with their COPY uncommitted, when the test
 * sends SIGKILL.
 */
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { openPostgres } from '../../pdp-server/src/store/db.js';
import { entry } from './sample-entry.js';
import { silentLog, testConfig } from './test-backends.js';

const [url, dataDir, memoryDir, count] = process.argv.slice(2) as [string, string, string, string];
const db = await openPostgres(url, silentLog);
const log = await createDecisionLog(db, testConfig(dataDir, { SCOPEGATE_SPOOL_MEMORY_DIR: memoryDir }), silentLog, { commitIntervalMs: 600_000 });
let answered = '';
for (let i = 0; i < Number(count); i++) {
  const e = entry({ session_id: 'kill9-tier' });
  log.append(e);
  answered += e.decision_id + '\n';
}
// What the PDP waits for before it answers.
await log.journaled();
process.stdout.write(answered + 'done\n');
setInterval(() => {}, 1_000);
