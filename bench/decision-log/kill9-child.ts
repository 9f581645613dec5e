/**
 * Child of kill9-durability.ts: a decision-log writer under load. When each append resolves
 * (the moment the PDP answers the decision) it reports the decision id on stdout. Appends
 * run 200 at a time, as concurrent requests would.
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
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      const e = entry({ session_id: 'kill9' });
      await log.append(e);
      process.stdout.write(e.decision_id + '\n');
    }),
  );
}
