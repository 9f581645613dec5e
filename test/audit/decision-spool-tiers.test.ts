/**
 * The spool's two tiers (pdp-server/src/audit/decision-spool.ts): segments are journaled in a
 * memory-backed folder while the database takes the rows, moved to disk when it is
 * unreachable, and recovered from both after a crash.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rmdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDecisionLog } from '../../pdp-server/src/audit/decision-log.js';
import { copyLine } from '../../pdp-server/src/audit/copy-format.js';
import { resolveMemoryDir } from '../../pdp-server/src/audit/decision-spool.js';
import { openPostgres, type Db } from '../../pdp-server/src/store/db.js';
import { entry } from './sample-entry.js';
import { openTestDb, silentLog, tempDir, testConfig, type TestDb } from './test-backends.js';

/** An entry as a spool segment line (what a writer journals). */
const spoolLine = (e: ReturnType<typeof entry>) => copyLine(e, 'test', JSON.stringify(e.request_summary));

const segments = async (dir: string) => (await readdir(dir)).filter((n) => n.startsWith('seg-'));

/** Run `fn` with a fresh temporary folder, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const tmp = await tempDir('sg-tier-');
  try {
    await fn(tmp.dir);
  } finally {
    await tmp.cleanup();
  }
}

async function sessionCount(db: Db, session: string): Promise<{ n: number; distinct: number }> {
  const r = await db.query<{ n: string; d: string }>('SELECT count(*) AS n, count(DISTINCT decision_id) AS d FROM decision_log WHERE session_id = $1', [session]);
  return { n: Number(r.rows[0]!.n), distinct: Number(r.rows[0]!.d) };
}

describe('decision spool tiers (postgres)', () => {
  let t: TestDb;
  before(async () => {
    t = await openTestDb('postgres');
  });
  after(async () => {
    await t.cleanup();
  });

  /** A writer on `<dir>/data` with its memory tier in `<dir>/mem`, committing only when flushed. */
  const memoryTierLog = async (dir: string) => {
    const mem = path.join(dir, 'mem');
    const log = await createDecisionLog(t.db, testConfig(path.join(dir, 'data'), { SCOPEGATE_SPOOL_MEMORY_DIR: mem }), silentLog, { commitIntervalMs: 60_000 });
    return { mem, log };
  };

  it('journals to the memory folder while the database takes the rows, and leaves both folders empty', () =>
    inTempDir(async (dir) => {
      const { mem, log } = await memoryTierLog(dir);
      for (const e of Array.from({ length: 40 }, () => entry({ session_id: 'tier-mem' }))) log.append(e);
      assert.equal((await segments(mem)).length, 1, 'the open segment is in the memory folder');
      assert.deepEqual(await segments(path.join(dir, 'data', 'spool')), [], 'nothing on disk');
      await log.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-mem'), { n: 40, distinct: 40 });
      assert.deepEqual(await segments(mem), []);
      await log.close();
    }));

  it('journals the entries in order before journaled() resolves (when each is written: decision-spool-journal.test.ts)', () =>
    inTempDir(async (dir) => {
      const { mem, log } = await memoryTierLog(dir);
      const rows = Array.from({ length: 3 }, () => entry({ session_id: 'tier-group' }));
      for (const e of rows) log.append(e);
      const [seg] = readdirSync(mem).filter((n) => n.startsWith('seg-'));
      assert.ok(seg, 'the segment is open');
      const ids = () => readFileSync(path.join(mem, seg), 'utf8').replace(/\0+$/, '').split('\n').filter(Boolean).map((l) => l.split('\t')[1]);
      // Still in the same turn: the first entry found the loop idle and is written; the rest
      // may wait for the end of the turn.
      assert.equal(ids()[0], rows[0]!.decision_id);
      await log.journaled();
      assert.deepEqual(ids(), rows.map((e) => e.decision_id));
      // Closing the segment writes a pending group first: nothing appended is left behind.
      log.append(entry({ session_id: 'tier-group' }));
      await log.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-group'), { n: 4, distinct: 4 });
      await log.close();
    }));

  it('moves segments to disk while the database is unreachable; the next start replays them once', async () => {
    const tmp = await tempDir('sg-tier-');
    const dead: Db = await openPostgres('postgres://postgres@127.0.0.1:1/none', silentLog);
    try {
      const dataDir = path.join(tmp.dir, 'data');
      const mem = path.join(tmp.dir, 'mem');
      const config = testConfig(dataDir, { SCOPEGATE_SPOOL_MEMORY_DIR: mem });
      const down = await createDecisionLog(dead, config, silentLog, { batchSize: 40 });
      const rows = Array.from({ length: 130 }, () => entry({ session_id: 'tier-outage' }));
      for (const e of rows.slice(0, 60)) down.append(e);
      await down.flush();
      assert.equal(down.stats().outage, true);
      // Appended during the outage: straight to disk.
      for (const e of rows.slice(60)) down.append(e);
      await down.flush();
      assert.deepEqual(await segments(mem), [], 'nothing is left only in memory during an outage');
      assert.ok((await segments(path.join(dataDir, 'spool'))).length >= 3, 'the backlog is on disk');
      await down.close();

      const up = await createDecisionLog(t.db, config, silentLog);
      await up.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-outage'), { n: 130, distinct: 130 });
      assert.deepEqual(await segments(path.join(dataDir, 'spool')), []);
      await up.close();
    } finally {
      await dead.close();
      await tmp.cleanup();
    }
  });

  it('recovers both folders in order; a segment in both is stored once and a stray .tmp copy is dropped', () =>
    inTempDir(async (dir) => {
      const dataDir = path.join(dir, 'data');
      const disk = path.join(dataDir, 'spool');
      const mem = path.join(dir, 'mem');
      await mkdir(disk, { recursive: true });
      await mkdir(mem, { mode: 0o700 });
      const a = entry({ session_id: 'tier-recover' });
      const b = entry({ session_id: 'tier-recover' });
      const c = entry({ session_id: 'tier-recover' });
      await writeFile(path.join(disk, 'seg-0000000000000001.rows'), spoolLine(a));
      // Killed between the rename and dropping the memory copy: the same segment twice.
      await writeFile(path.join(mem, 'seg-0000000000000002.rows'), spoolLine(b));
      await writeFile(path.join(disk, 'seg-0000000000000002.rows'), spoolLine(b));
      // Killed before the rename: a partial .tmp next to the whole memory copy.
      await writeFile(path.join(mem, 'seg-0000000000000003.rows'), spoolLine(c));
      await writeFile(path.join(disk, 'seg-0000000000000003.rows.tmp'), spoolLine(c).slice(0, 20));
      const log = await createDecisionLog(t.db, testConfig(dataDir, { SCOPEGATE_SPOOL_MEMORY_DIR: mem }), silentLog);
      await log.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-recover'), { n: 3, distinct: 3 });
      assert.equal(log.stats().tornLines, 0);
      assert.deepEqual(await readdir(disk), []);
      assert.deepEqual(await segments(mem), []);
      // A new segment after recovery numbers past the recovered ones.
      log.append(entry({ session_id: 'tier-recover' }));
      await log.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-recover'), { n: 4, distinct: 4 });
      await log.close();
    }));

  it('writes new segments to disk while a backlog is queued', () =>
    inTempDir(async (dir) => {
      const dataDir = path.join(dir, 'data');
      const disk = path.join(dataDir, 'spool');
      const mem = path.join(dir, 'mem');
      await mkdir(disk, { recursive: true });
      // Six segments left by an earlier process: a backlog to replay first.
      for (let n = 1; n <= 6; n++) {
        await writeFile(path.join(disk, `seg-000000000000000${n}.rows`), spoolLine(entry({ session_id: 'tier-backlog' })));
      }
      const log = await createDecisionLog(t.db, testConfig(dataDir, { SCOPEGATE_SPOOL_MEMORY_DIR: mem }), silentLog);
      log.append(entry({ session_id: 'tier-backlog' }));
      assert.ok((await segments(disk)).includes('seg-0000000000000007.rows'), 'the new segment is on disk');
      assert.deepEqual(await segments(mem), []);
      await log.flush();
      assert.deepEqual(await sessionCount(t.db, 'tier-backlog'), { n: 7, distinct: 7 });
      // Backlog replayed: the next segment is in memory again.
      log.append(entry({ session_id: 'tier-backlog' }));
      assert.equal((await segments(mem)).length, 1);
      await log.close();
      assert.deepEqual(await sessionCount(t.db, 'tier-backlog'), { n: 8, distinct: 8 });
    }));

  it('loses no answered decision when the writer is killed with its segment only in memory', () =>
    inTempDir(async (dir) => {
      const dataDir = path.join(dir, 'data');
      const mem = path.join(dir, 'mem');
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'spool-writer-child.ts'), t.url!, dataDir, mem, '500'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => {
        out += d;
      });
      while (!out.includes('done\n') && child.exitCode === null) await once(child.stdout, 'data');
      const answered = out.split('\n').filter((l) => /^[0-9a-f-]{36}$/.test(l));
      assert.equal(answered.length, 500);
      assert.equal((await segments(mem)).length, 1, 'the segment is in the memory folder, uncommitted');
      child.kill('SIGKILL');
      await once(child, 'exit');
      assert.deepEqual(await sessionCount(t.db, 'kill9-tier'), { n: 0, distinct: 0 }, 'nothing was committed before the kill');

      const log = await createDecisionLog(t.db, testConfig(dataDir, { SCOPEGATE_SPOOL_MEMORY_DIR: mem }), silentLog);
      await log.flush();
      const r = await t.db.query<{ decision_id: string }>("SELECT decision_id FROM decision_log WHERE session_id = 'kill9-tier'");
      assert.deepEqual(new Set(r.rows.map((x) => x.decision_id)), new Set(answered));
      assert.equal(r.rows.length, 500);
      await log.close();
    }));
});

describe('decision spool memory folder', () => {
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);

  it('uses a private folder under /dev/shm by default on Linux, the same one for the same data folder', () =>
    inTempDir(async (dir) => {
      const a = resolveMemoryDir(dir, 'auto', warn);
      if (process.platform === 'linux') {
        assert.match(a ?? '', /^\/dev\/shm\/scopegate-\d+-[0-9a-f]{16}$/);
        assert.equal(resolveMemoryDir(dir, 'auto', warn), a);
        const other = await tempDir('sg-tier-');
        const b = resolveMemoryDir(other.dir, 'auto', warn);
        assert.notEqual(b, a);
        await other.cleanup();
        for (const d of [a, b]) if (d) await rmdir(d);
      }
      assert.equal(resolveMemoryDir(dir, 'off', warn), null);
    }));

  it('refuses a folder others can open, or a symbolic link, and falls back to disk with a warning', () =>
    inTempDir(async (dir) => {
      const open = path.join(dir, 'open');
      await mkdir(open);
      await chmod(open, 0o777);
      warnings.length = 0;
      assert.equal(resolveMemoryDir(dir, open, warn), null);
      assert.match(warnings[0] ?? '', /open to other users/);

      const target = path.join(dir, 'target');
      await mkdir(target, { mode: 0o700 });
      const link = path.join(dir, 'link');
      await symlink(target, link);
      warnings.length = 0;
      assert.equal(resolveMemoryDir(dir, link, warn), null);
      assert.match(warnings[0] ?? '', /symbolic link/);

      const own = path.join(dir, 'own');
      assert.equal(resolveMemoryDir(dir, own, warn), own, 'a new folder is created 0700 and accepted');
    }));
});
