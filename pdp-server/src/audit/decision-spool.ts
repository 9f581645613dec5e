/**
 * The spool: an append-only journal of decision-log entries in `<dataDir>/spool/`, split into
 * numbered segment files (`seg-<n>.rows`, one row per line in COPY text format — the bytes
 * that are also streamed into Postgres; see copy-format.ts).
 *
 * `append` writes the entry's line with one write(2) before it returns, and the PDP answers
 * a decision only after that, so an answered decision survives the process being killed
 * (the bytes are in the OS page cache). The write is synchronous on purpose: a write of a
 * few hundred bytes into the page cache costs ~3 µs (bench/decision-log), while handing it
 * to libuv's thread pool and waiting for the callback — or gathering a turn's entries into
 * one write — held every answer back behind the slowest entry of its group and tripled the
 * p99 at half load. A segment is deleted once its entries are committed to the database.
 * While the database is unreachable segments are fsync'ed as they are closed (one fsync per
 * group of entries), so they survive a machine crash too.
 */
import { closeSync, fsync, ftruncateSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseCopyLine } from './copy-format.js';
import type { DecisionLogEntry } from './decision-log.js';

/** How far a segment file is extended ahead at a time (doubling while it grows). */
const PREALLOCATE_BYTES = 1024 * 1024;

const SEGMENT_RE = /^seg-(\d{16})\.rows$/;

export interface Segment {
  readonly file: string;
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
}

export class DecisionSpool {
  readonly dir: string;
  private seq = 0;
  private fd: number | null = null;
  /** Where the next line goes in the active segment, and how far the file is already extended. */
  private offset = 0;
  private allocated = 0;
  private active: Segment | null = null;
  /**
   * Called with the error of a failed journal write (disk full, …). The segment's entries stay
   * in memory — except in a streamed segment, which keeps none: its rows are then only in its
   * COPY, and lost if that fails too.
   */
  onWriteError: (err: Error) => void = () => {};

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'spool');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Segments left by a previous process (crash or outage), oldest first. */
  recover(): Segment[] {
    const names = readdirSync(this.dir)
      .map((n) => ({ n, m: SEGMENT_RE.exec(n) }))
      .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
      .sort((a, b) => (a.n < b.n ? -1 : 1));
    for (const { m } of names) this.seq = Math.max(this.seq, Number(m[1]));
    return names.map(({ n }) => ({ file: path.join(this.dir, n), entries: null, count: -1, fileIntact: true, synced: true, attempted: true }));
  }

  /**
   * Journal one entry — `line` is its copyLine encoding — into the active segment (opened
   * on demand). Never throws: when the write fails the segment is marked not intact (see
   * onWriteError).
   */
  append(entry: DecisionLogEntry, line: string): void {
    let seg = this.active;
    if (seg === null) {
      this.seq += 1;
      seg = { file: path.join(this.dir, `seg-${String(this.seq).padStart(16, '0')}.rows`), entries: [], count: 0, fileIntact: true, synced: false, attempted: false };
      this.active = seg;
      try {
        this.fd = openSync(seg.file, 'wx', 0o600);
        this.offset = 0;
        this.allocated = 0;
      } catch (err) {
        this.fd = null;
        seg.fileIntact = false;
        this.onWriteError(err as Error);
      }
    }
    seg.entries?.push(entry);
    seg.count += 1;
    if (this.fd === null || !seg.fileIntact) return;
    try {
      const bytes = Buffer.byteLength(line);
      if (this.offset + bytes > this.allocated) {
        // The file is extended ahead (sparse) and written in place: an append that grows the
        // file must update its size in the filesystem journal on every write, and on ext4
        // that made the journal write several times dearer while Postgres commits on the same
        // disk (bench/decision-log). The file is cut to its real length when it is closed.
        this.allocated = Math.max(this.allocated * 2, this.offset + bytes, PREALLOCATE_BYTES);
        ftruncateSync(this.fd, this.allocated);
      }
      const n = writeSync(this.fd, line, this.offset, 'utf8');
      this.offset += n;
      if (n !== bytes) throw new Error(`short write to the spool (${n} of ${bytes} bytes)`);
    } catch (err) {
      seg.fileIntact = false;
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
      if (sync && seg.fileIntact) {
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
    }
    return seg;
  }

  /** fsync an already closed segment file. */
  async sync(seg: Segment): Promise<void> {
    if (seg.synced || !seg.fileIntact) return;
    const { open } = await import('node:fs/promises');
    const fh = await open(seg.file, 'r');
    try {
      await fh.sync();
      seg.synced = true;
    } finally {
      await fh.close();
    }
  }

  /**
   * Entries of a segment file in order. A torn last line (the process died mid-write) is
   * skipped: its decision was never answered, because append returns only after the write.
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
    await unlink(seg.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  closeSync(): void {
    if (this.fd !== null) {
      try {
        ftruncateSync(this.fd, this.offset);
        closeSync(this.fd);
      } catch {
        // see rotate()
      }
      this.fd = null;
    }
  }
}
