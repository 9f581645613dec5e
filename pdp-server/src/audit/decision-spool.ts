/**
 * The spool: an append-only journal of decision-log entries, split into numbered segment
 * files (`seg-<n>.rows`, one row per line in COPY text format — the bytes that are also
 * streamed into Postgres; see copy-format.ts).
 *
 * Group journaling: while the event loop is busy, `append` adds the entry's line to the
 * active segment's pending group, and the group is written with one synchronous write(2) at
 * the end of the turn (`setImmediate`, right after the turn's I/O callbacks), or earlier when
 * the segment is closed. While it is idle (a group would hold one line), `append` writes the
 * line at once and the answer does not wait for the end of the turn — the way PostgreSQL
 * delays a commit for company only when other transactions are active (commit_siblings).
 * `journaled()` resolves once every line appended so far is in the file, and the PDP
 * answers a decision only after that, so an answered decision survives the process being
 * killed (the bytes are in the OS page cache). One write per turn instead of one per
 * decision took the decide p99 with logging from 2.3–2.5× to 1.35–2.15× of the p99 without
 * it, and the logging server's peak up by about 8 % (bench/decision-log). The write stays on
 * the JS thread: an earlier grouping that handed it to libuv's thread pool and answered on
 * its callback held answers behind slow writes and tripled the p99.
 *
 * Two tiers. While the database takes the rows, segments live in a memory-backed folder
 * (tmpfs: `/dev/shm` on Linux, see `resolveMemoryDir`) and are deleted once committed, a
 * quarter of a second later. A journal write there is a copy into shared memory; on ext4
 * the same write may wait on the filesystem journal (timestamp updates, block allocation)
 * while Postgres syncs its WAL on the same disk, and those stalls were most of what logging
 * added to the decide p99. Nothing is given up by it: a segment on disk was never fsync'ed
 * while the database was healthy either (it is deleted long before writeback), so a
 * machine crash lost the same last fraction of a second both ways, and a killed process
 * loses nothing in either (tmpfs pages outlive the process; `recover` reads both tiers).
 * Once the database is unreachable (`durable`), new segments are written to disk
 * (`<dataDir>/spool/`) and fsync'ed as they are closed, and the segments still in memory
 * are moved there (`persist`: copy, fsync, rename), so a backlog survives a reboot.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, realpathSync, rmdirSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { copyFile, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseCopyLine } from './copy-format.js';
import type { DecisionLogEntry } from './decision-log.js';

/** How far a segment file is extended ahead at a time (doubling while it grows). */
const PREALLOCATE_BYTES = 1024 * 1024;

const SEGMENT_RE = /^seg-(\d{16})\.rows$/;

export interface Segment {
  /** Its path; changes when `persist` moves it from the memory tier to disk. */
  file: string;
  /** In the memory tier (lost on reboot until persisted). */
  hot: boolean;
  /** Entries kept in memory so the normal path never re-reads the file; null once evicted. */
  entries: DecisionLogEntry[] | null;
  count: number;
  /** True once the file content is known to be complete (no failed write). */
  fileIntact: boolean;
  synced: boolean;
  /**
   * True once any of its rows may have reached the database (an insert was tried, or the
   * segment was left over from an earlier run). Such a segment is only ever written with the
   * idempotent INSERT … ON CONFLICT DO NOTHING; a fresh one may take the COPY fast path.
   */
  attempted: boolean;
  /** A move to disk in progress (see DecisionSpool.persist). */
  persisting?: Promise<void> | undefined;
}

/**
 * A line appended this soon after the last journal write means the event loop is handling
 * several requests back to back, and lines are grouped per turn; otherwise each is written
 * as it comes. Far below the gap between requests at a quarter of the peak (300–400 µs), far
 * above it within one turn at the peak.
 */
const BUSY_WITHIN_MS = 0.1;

const WRITTEN: Promise<void> = Promise.resolve();

/** fsync a file or a folder by path. */
async function syncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** statfs f_type of tmpfs (linux/magic.h TMPFS_MAGIC). */
const TMPFS_MAGIC = 0x01021994;

/**
 * The memory tier's folder for a data folder, or null for none. `setting` is
 * SCOPEGATE_SPOOL_MEMORY_DIR: `off`, a path, or `auto` — a folder of its own under /dev/shm
 * when that is a tmpfs (Linux), named after the user and the data folder so two PDPs with
 * different data folders never share one, and the restarted PDP finds its predecessor's.
 * The folder must be a real directory owned by this user and closed to everyone else (0700);
 * otherwise (a symlink planted in /dev/shm, another owner) the memory tier is refused and
 * `warn` says why: the spool then uses the disk only.
 */
export function resolveMemoryDir(dataDir: string, setting: string, warn: (msg: string) => void): string | null {
  if (setting === 'off') return null;
  let dir = setting;
  if (setting === 'auto') {
    try {
      if (process.platform !== 'linux' || statfsSync('/dev/shm').type !== TMPFS_MAGIC) return null;
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const id = createHash('sha256').update(realpathSync(dataDir)).digest('hex').slice(0, 16);
      dir = path.join('/dev/shm', `scopegate-${process.getuid?.() ?? 0}-${id}`);
    } catch {
      return null;
    }
  }
  try {
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = lstatSync(dir);
    const uid = process.getuid?.();
    if (!st.isDirectory()) throw new Error('not a directory (or a symbolic link)');
    if (uid !== undefined && st.uid !== uid) throw new Error(`owned by uid ${st.uid}, not ${uid}`);
    if ((st.mode & 0o077) !== 0) throw new Error(`mode ${(st.mode & 0o777).toString(8)} is open to other users (must be 700)`);
    return dir;
  } catch (err) {
    warn(`decision spool memory folder ${dir} refused: ${(err as Error).message}; spooling to disk only`);
    return null;
  }
}

export class DecisionSpool {
  /** The disk tier: `<dataDir>/spool`. */
  readonly dir: string;
  /** The memory tier, or null when there is none (see resolveMemoryDir). */
  readonly memoryDir: string | null;
  /**
   * New segments go to disk (not the memory tier) while this is set: the decision log sets it
   * while the database is unreachable or a backlog is being replayed.
   */
  durable = false;
  private seq = 0;
  private fd: number | null = null;
  /** Where the next line goes in the active segment, and how far the file is already extended. */
  private offset = 0;
  private allocated = 0;
  private active: Segment | null = null;
  /** Lines appended to the active segment this turn, not yet written (see `writeGroup`). */
  private group: string[] = [];
  /** Whether lines are grouped per turn (the loop is busy) or written as they come (see append). */
  private grouping = false;
  /** When a line or group was last written (`clock`). */
  private lastWriteAt = -Infinity;
  /** Resolves when the pending group is written; null while nothing is pending. */
  private groupWritten: Promise<void> | null = null;
  private resolveGroup: () => void = () => {};
  /** A write to the memory tier failed (full, removed): later segments go to disk. */
  private memoryFailed = false;
  /**
   * Called with the error of a failed journal write (disk full, …). The segment's entries stay
   * in memory — except in a streamed segment, which keeps none: its rows are then only in its
   * COPY, and lost if that fails too.
   */
  onWriteError: (err: Error) => void = () => {};

  /** `clock` (milliseconds) tells an idle loop from a busy one; tests pass their own. */
  constructor(
    dataDir: string,
    memoryDir: string | null = null,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.dir = path.join(dataDir, 'spool');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.memoryDir = memoryDir;
  }

  /**
   * Segments left by a previous process (crash or outage), oldest first, from both tiers. A
   * segment found in both was killed mid-`persist` after its rename: the disk copy is whole
   * and the memory one is dropped. A `.tmp` copy never renamed is deleted (the memory copy
   * is still there).
   */
  recover(): Segment[] {
    const found = new Map<string, Segment>();
    for (const [dir, hot] of [[this.dir, false], [this.memoryDir, true]] as const) {
      if (dir === null) continue;
      for (const n of readdirSync(dir)) {
        const m = SEGMENT_RE.exec(n);
        if (m === null) {
          if (!hot && n.endsWith('.rows.tmp')) unlinkSync(path.join(dir, n));
          continue;
        }
        this.seq = Math.max(this.seq, Number(m[1]));
        const file = path.join(dir, n);
        if (found.has(n)) {
          unlinkSync(file);
          continue;
        }
        found.set(n, { file, hot, entries: null, count: -1, fileIntact: true, synced: !hot, attempted: true });
      }
    }
    return [...found.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, seg]) => seg);
  }

  /**
   * Journal one entry — `line` is its copyLine encoding — into the active segment (opened
   * on demand): written at once on an idle loop, or joining the turn's group, written at the
   * end of the turn, on a busy one (answer only after `journaled()`). Never throws: when the
   * write fails the segment is marked not intact (see onWriteError).
   */
  append(entry: DecisionLogEntry, line: string): void {
    let seg = this.active;
    if (seg === null) {
      this.seq += 1;
      const hot = this.memoryDir !== null && !this.durable && !this.memoryFailed;
      const file = path.join(hot ? this.memoryDir! : this.dir, `seg-${String(this.seq).padStart(16, '0')}.rows`);
      seg = { file, hot, entries: [], count: 0, fileIntact: true, synced: false, attempted: false };
      this.active = seg;
      try {
        this.fd = openSync(seg.file, 'wx', 0o600);
        this.offset = 0;
        this.allocated = 0;
      } catch (err) {
        this.fd = null;
        seg.fileIntact = false;
        if (hot) this.memoryFailed = true;
        this.onWriteError(err as Error);
      }
    }
    seg.entries?.push(entry);
    seg.count += 1;
    if (this.fd === null || !seg.fileIntact) return;
    if (this.groupWritten === null) {
      // An idle loop has nobody to group with: write the line now, and answer without the
      // wait for the end of the turn. A second line soon after the last write means the loop
      // is busy (several requests per turn): group from then on (see writeGroup).
      if (!this.grouping && this.clock() - this.lastWriteAt >= BUSY_WITHIN_MS) {
        this.writeLines(seg, this.fd, line);
        this.lastWriteAt = this.clock();
        return;
      }
      this.grouping = true;
      this.groupWritten = new Promise((resolve) => (this.resolveGroup = resolve));
      setImmediate(() => this.writeGroup());
    }
    this.group.push(line);
  }

  /** Resolves once every entry appended so far is written to its segment file (or failed to be). */
  journaled(): Promise<void> {
    return this.groupWritten ?? WRITTEN;
  }

  /**
   * Write the pending group to the active segment with one write(2). Runs at the end of the
   * turn that appended it, and before the segment is closed, so a group never outlives its
   * segment. Never throws: a failed write marks the segment not intact (see onWriteError).
   */
  private writeGroup(): void {
    if (this.groupWritten === null) return;
    const lines = this.group;
    const done = this.resolveGroup;
    this.group = [];
    this.groupWritten = null;
    const seg = this.active;
    if (seg !== null && this.fd !== null && seg.fileIntact) this.writeLines(seg, this.fd, lines.length === 1 ? lines[0]! : lines.join(''));
    // A group of one saved nothing: the load has dropped, so the next line is written at once.
    this.grouping = lines.length > 1;
    this.lastWriteAt = this.clock();
    done();
  }

  private writeLines(seg: Segment, fd: number, text: string): void {
    try {
      const bytes = Buffer.byteLength(text);
      if (this.offset + bytes > this.allocated) {
        // The file is extended ahead (sparse) and written in place: an append that grows the
        // file must update its size in the filesystem journal on every write, and on ext4
        // that made the journal write several times dearer while Postgres commits on the same
        // disk (bench/decision-log). The file is cut to its real length when it is closed.
        this.allocated = Math.max(this.allocated * 2, this.offset + bytes, PREALLOCATE_BYTES);
        ftruncateSync(fd, this.allocated);
      }
      const n = writeSync(fd, text, this.offset, 'utf8');
      this.offset += n;
      if (n !== bytes) throw new Error(`short write to the spool (${n} of ${bytes} bytes)`);
    } catch (err) {
      seg.fileIntact = false;
      if (seg.hot) this.memoryFailed = true;
      this.onWriteError(err as Error);
    }
  }

  /** The segment entries are being appended to (null between a rotation and the next append). */
  get activeSegment(): Segment | null {
    return this.active;
  }

  get activeCount(): number {
    return this.active?.count ?? 0;
  }

  /**
   * Close the active segment and hand it over; optionally fsync it first (outage mode). The
   * spool switches to a fresh segment before this returns its promise, so no later append
   * lands in the segment handed over.
   */
  async rotate(sync: boolean): Promise<Segment | null> {
    this.writeGroup();
    const seg = this.active;
    const fd = this.fd;
    const length = this.offset;
    this.active = null;
    this.fd = null;
    if (seg === null) return null;
    if (fd !== null) {
      try {
        ftruncateSync(fd, length);
      } catch (err) {
        seg.fileIntact = false;
        this.onWriteError(err as Error);
      }
      if (sync && seg.fileIntact && !seg.hot) {
        await new Promise<void>((resolve) => fsync(fd, (err) => {
          if (err) {
            seg.fileIntact = false;
            this.onWriteError(err);
          }
          resolve();
        }));
        seg.synced = seg.fileIntact;
      }
      try {
        closeSync(fd);
      } catch {
        // Closing can only fail on a bad fd; the data was already written or flagged.
      }
      if (sync && seg.hot) await this.sync(seg);
    }
    return seg;
  }

  /**
   * Make a closed segment survive a machine crash: fsync it, or move it from the memory tier
   * to disk (copy to `.tmp`, fsync, rename, fsync the folder, then drop the memory copy).
   * A failed move leaves the segment where it was, still readable, and rejects.
   */
  async sync(seg: Segment): Promise<void> {
    if (seg.synced || !seg.fileIntact) return;
    if (seg.hot) {
      seg.persisting ??= this.persist(seg).finally(() => {
        seg.persisting = undefined;
      });
      return seg.persisting;
    }
    await syncPath(seg.file);
    seg.synced = true;
  }

  private async persist(seg: Segment): Promise<void> {
    const from = seg.file;
    const to = path.join(this.dir, path.basename(from));
    const tmp = `${to}.tmp`;
    await copyFile(from, tmp);
    await syncPath(tmp);
    await rename(tmp, to);
    await syncPath(this.dir);
    // Readers use seg.file: point them at the disk copy before the memory one goes.
    seg.file = to;
    seg.hot = false;
    seg.synced = true;
    await unlink(from).catch(() => {});
  }

  /**
   * Entries of a segment file in order. A torn last line (the process died mid-write) is
   * skipped: its decision was never answered, because answers wait for `journaled()`.
   */
  async read(seg: Segment): Promise<{ entries: DecisionLogEntry[]; torn: number }> {
    // A segment of a killed process still has the zeros its file was extended with.
    const text = (await readFile(seg.file, 'utf8')).replace(/\0+$/, '');
    const entries: DecisionLogEntry[] = [];
    let torn = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const entry = parseCopyLine(line);
      if (entry) entries.push(entry);
      else torn += 1;
    }
    return { entries, torn };
  }

  async remove(seg: Segment): Promise<void> {
    // A move to disk in progress would otherwise bring a committed segment back.
    if (seg.persisting) await seg.persisting.catch(() => {});
    await unlink(seg.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  closeSync(): void {
    this.writeGroup();
    if (this.fd !== null) {
      try {
        ftruncateSync(this.fd, this.offset);
        closeSync(this.fd);
      } catch {
        // see rotate()
      }
      this.fd = null;
    }
    if (this.memoryDir !== null) {
      try {
        // Only when empty: anything left in it is replayed by the next start.
        rmdirSync(this.memoryDir);
      } catch {
        // not empty, or already gone
      }
    }
  }
}
