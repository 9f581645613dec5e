import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { migrate, openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import { silentLog, tempDir, testConfig } from './test-backends.js';
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.js';
import { entry } from './sample-entry.js';

describe('decision log across a Postgres outage (own instance)', () => {
  let pg: PrivatePostgres;
  let db: Db;
  before(async () => {
    pg = await startPrivatePostgres();
    db = await openPostgres(pg.url, silentLog);
    await migrate(db);
  });
  after(async () => {
    await db.close();
    pg.destroy();
  });

  it('loses nothing when Postgres stops under load and comes back', async () => {
    const tmp = await tempDir('sg-outage-');
    try {
      const log = await createDecisionLog(db, testConfig(tmp.dir), silentLog, { batchSize: 200, retryMaxMs: 200 });
      let appended = 0;
      const session = randomUUID();
      // Load: a burst of decisions every few ms for the whole test, across stop and restart.
      let running = true;
      const load = (async () => {
        for (let i = 0; i < 100_000 && running; i++) {
          for (let j = 0; j < 50; j++) {
            log.append(entry({ session_id: session }));
            appended += 1;
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const until = async (pred: () => boolean) => {
        for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
      };
      await until(() => log.stats().inserted > 500);
      pg.stop();
      const atStop = appended;
      await until(() => log.stats().outage && appended > atStop + 1000);
      assert.equal(log.stats().outage, true, 'the writer noticed the outage');
      pg.start();
      await until(() => !log.stats().outage && log.stats().inserted > atStop + 1000);
      running = false;
      await load;
      await log.flush();
      assert.equal(log.stats().outage, false);
      const r = await db.query<{ n: string }>('SELECT count(*) AS n FROM decision_log WHERE session_id = $1', [session]);
      assert.equal(Number(r.rows[0]!.n), appended);
      assert.equal(log.stats().pendingSegments, 0);
      await log.close();
    } finally {
      await tmp.cleanup();
    }
  });
});
