/**
 * When the spool writes a journal line (pdp-server/src/audit/decision-spool.ts): at once on
 * an idle event loop, grouped into one write at the end of the turn on a busy one. The
 * spool's clock is the test's, so which case applies does not depend on how fast this
 * machine runs the test.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { copyLine } from '../../pdp-server/src/audit/copy-format.js';
import { DecisionSpool } from '../../pdp-server/src/audit/decision-spool.js';
import { entry } from './sample-entry.js';
import { tempDir } from './test-backends.js';

/** A spool on a temporary folder whose clock the test moves (milliseconds). */
async function spoolWithClock(fn: (spool: DecisionSpool, clock: { ms: number }, written: () => string[]) => Promise<void>): Promise<void> {
  const tmp = await tempDir('sg-journal-');
  const clock = { ms: 1_000 };
  const spool = new DecisionSpool(path.join(tmp.dir, 'data'), null, () => clock.ms);
  // The decision ids in the active segment's file so far (the file is extended ahead with zeros).
  const written = () =>
    readFileSync(spool.activeSegment!.file, 'utf8').replace(/\0+$/, '').split('\n').filter(Boolean).map((l) => l.split('\t')[1]!);
  try {
    await fn(spool, clock, written);
  } finally {
    spool.closeSync();
    await tmp.cleanup();
  }
}

function append(spool: DecisionSpool): string {
  const e = entry();
  spool.append(e, copyLine(e, 'test', JSON.stringify(e.request_summary)));
  return e.decision_id;
}

describe('decision spool journal writes', () => {
  it('writes each line at once while appends come further apart than a busy loop would make them', () =>
    spoolWithClock(async (spool, clock, written) => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        ids.push(append(spool));
        assert.deepEqual(written(), ids, 'in the file before append returns');
        assert.equal(await Promise.race([spool.journaled().then(() => 'resolved'), nextTurn('pending')]), 'resolved');
        clock.ms += 1;
      }
    }));

  it('groups the lines of a busy turn into one write at its end, and journaled() waits for it', () =>
    spoolWithClock(async (spool, clock, written) => {
      const first = append(spool);
      // The next two come right after the first write: the loop is busy.
      const rest = [append(spool), append(spool)];
      assert.deepEqual(written(), [first], 'only the line that found the loop idle is written yet');
      let done = false;
      const journaled = spool.journaled().then(() => (done = true));
      assert.equal(done, false);
      await journaled;
      assert.deepEqual(written(), [first, ...rest], "the turn's group, in order");
      // Still grouping (the last group held two lines), however late the next line comes.
      clock.ms += 1_000;
      const later = [append(spool), append(spool)];
      assert.deepEqual(written(), [first, ...rest]);
      await spool.journaled();
      assert.deepEqual(written(), [first, ...rest, ...later]);
    }));

  it('writes at once again after a group of one, and a closing segment takes its pending group along', () =>
    spoolWithClock(async (spool, clock, written) => {
      const a = append(spool);
      const b = append(spool); // busy: grouped
      await spool.journaled();
      const c = append(spool); // still grouping: a group of one
      assert.deepEqual(written(), [a, b]);
      await spool.journaled();
      assert.deepEqual(written(), [a, b, c]);
      clock.ms += 1;
      const d = append(spool); // the last group held one line: written at once
      assert.deepEqual(written(), [a, b, c, d]);
      const e = append(spool); // right after it: grouped, pending
      assert.deepEqual(written(), [a, b, c, d]);
      const file = spool.activeSegment!.file;
      const closed = await spool.rotate(false);
      assert.equal(closed?.file, file);
      assert.deepEqual(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t')[1]), [a, b, c, d, e]);
      await spool.remove(closed!);
    }));
});
