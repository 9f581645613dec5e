/**
 * Child of kill9-durability.ts: a decision-log writer under load. After each append returns
 * (the moment the PDP would answer the decision) it reports the decision id on stdout.
 */
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { openPostgres } from '../../pdp-server/src/store/db.js';
import { silentLog, testConfig } from '../../test/audit/test-backends.js';
import { entry } from '../../test/audit/sample-entry.js';

const [url, dataDir] = process.argv.slice(2) as [string, string];
const db = await openPostgres(url, silentLog);
const log = await createDecisionLog(db, testConfig(dataDir), silentLog);
process.stdout.write('ready\n');
for (let i = 0; i < 10_000_000; i++) {
  const e = entry({ session_id: 'kill9' });
  log.append(e);
  process.stdout.write(e.decision_id + '\n');
  if (i % 200 === 199) await new Promise((r) => setImmediate(r));
}
