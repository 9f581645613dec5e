/**
 * Child of kill9-durability.ts: a decision-log writer under load. Once a turn's appends are
 * journaled (the moment the PDP answers those decisions) it reports their ids on stdout. Appends
 * come 200 per event-loop turn, as concurrent requests would, and the loop turns between
 * them (timers and I/O run, as in a server).
 */
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { openPostgres } from '../../pdp-server/src/store/db.js';
import { silentLog, testConfig } from '../../test/audit/test-backends.js';
import { entry } from '../../test/audit/sample-entry.js';

const [url, dataDir] = process.argv.slice(2) as [string, string];
const db = await openPostgres(url, silentLog);
const log = await createDecisionLog(db, testConfig(dataDir), silentLog);
process.stdout.write('ready\n');
for (let i = 0; i < 50_000; i++) {
  let answered = '';
  for (let j = 0; j < 200; j++) {
    const e = entry({ session_id: 'kill9' });
    log.append(e);
    answered += e.decision_id + '\n';
  }
  // The ids are reported only once journaled, as the PDP answers.
  await log.journaled();
  if (!process.stdout.write(answered)) await new Promise((resolve) => process.stdout.once('drain', resolve));
  await new Promise((resolve) => setImmediate(resolve));
}
