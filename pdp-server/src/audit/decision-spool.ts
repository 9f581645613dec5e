/**
 * The spool: an append-only journal of decision-log entries in `<dataDir>/spool/`, split into
 * numbered segment files (`seg-<n>.ndjson`, one JSON entry per line).
 *
 * Entries are journaled with group commit: the lines appended while the previous write was in
 * flight (or during one turn of the event loop) go out in one asynchronous write(2) (on
 * libuv's thread pool, so a slow disk never stalls the event loop), and `append` resolves
 * when that write has completed. The PDP
 * answers a decision only after its entry is journaled, so an answered decision survives the
 * process being killed (the bytes are in the OS page cache). A segment is deleted once its entries are committed
 * to the database. While the database is unreachable segments are fsync'ed as they are
 * closed (one fsync per group of entries), so they survive a machine crash too.
 */
import { closeSync, fsync, mkdirSync, openSync, readdirSync, write, writeSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { DecisionLogEntry } from './decision-log.js';

const SEGMENT_RE = /^seg-(\d{16})\.ndjson$/;

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
  private active: Segment | null = null;
  /** Lines of the active segment not yet handed to write(2), and who waits for them. */
  private buffered = '';
  private waiters: (() => void)[] = [];
  private scheduled = false;
  /** The last write issued on the active segment's fd; writes on one fd never overlap. */
  private inflight: Promise<void> = Promise.resolve();
  /**
   * A write of the active segment is in flight. Lines appended meanwhile wait for it and then
   * go out together in the next write, so under load there is about one write(2) per write
   * latency rather than one per event-loop turn.
   */
  private writing = false;
  /** Called with the error of a failed journal write (disk full, …); entries stay in memory. */
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
   * Journal one entry into the active segment (opened on demand). Never throws; the promise
   * resolves (never rejects) once the entry's bytes are written, or the write failed and the
   * entry lives on in memory only.
   */
  append(entry: DecisionLogEntry): Promise<void> {
    let seg = this.active;
    if (seg === null) {
      this.seq += 1;
      seg = { file: path.join(this.dir, `seg-${String(this.seq).padStart(16, '0')}.ndjson`), entries: [], count: 0, fileIntact: true, synced: false, attempted: false };
      this.active = seg;
      try {
        this.fd = openSync(seg.file, 'a', 0o600);
      } catch (err) {
        this.fd = null;
        seg.fileIntact = false;
        this.onWriteError(err as Error);
      }
    }
    seg.entries?.push(entry);
    seg.count += 1;
    if (this.fd === null || !seg.fileIntact) return Promise.resolve();
    this.buffered += JSON.stringify(entry) + '\n';
    const written = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.writeOut());
    }
    return written;
  }

  /** End of an event-loop turn: write what was appended, unless a write is already in flight. */
  private writeOut(): void {
    this.scheduled = false;
    if (!this.writing) this.issueWrite();
  }

  /** Hand the buffered lines of the active segment to one write(2), after any in flight. */
  private issueWrite(): void {
    const data = this.buffered;
    const waiters = this.waiters;
    const fd = this.fd;
    const seg = this.active;
    this.buffered = '';
    this.waiters = [];
    if (data === '') return;
    const release = () => {
      for (const w of waiters) w();
    };
    if (fd === null || seg === null) {
      release();
      return;
    }
    const bytes = Buffer.from(data, 'utf8');
    this.writing = true;
    this.inflight = this.inflight.then(
      () =>
        new Promise<void>((resolve) => {
          write(fd, bytes, 0, bytes.length, null, (err, n) => {
            if (err || n !== bytes.length) {
              seg.fileIntact = false;
              this.onWriteError(err ?? new Error(`short write to the spool (${n} of ${bytes.length} bytes)`));
            }
            release();
            resolve();
            // Still the active segment: write what piled up meanwhile (rotate handles its own).
            if (this.active === seg) {
              this.writing = false;
              if (this.buffered !== '') this.issueWrite();
            }
          });
        }),
    );
  }

  get activeCount(): number {
    return this.active?.count ?? 0;
  }

  /** Close the active segment and hand it over; optionally fsync it first (outage mode). */
  async rotate(sync: boolean): Promise<Segment | null> {
    // Lines still buffered belong to this segment: write them to its fd (after any write in
    // flight) before switching.
    if (this.buffered !== '') this.issueWrite();
    const seg = this.active;
    const fd = this.fd;
    const inflight = this.inflight;
    this.active = null;
    this.fd = null;
    this.inflight = Promise.resolve();
    this.writing = false;
    if (seg === null) return null;
    await inflight;
    if (fd !== null) {
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
    const text = await readFile(seg.file, 'utf8');
    const entries: DecisionLogEntry[] = [];
    let torn = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        entries.push(JSON.parse(line) as DecisionLogEntry);
      } catch {
        torn += 1;
      }
    }
    return { entries, torn };
  }

  async remove(seg: Segment): Promise<void> {
    await unlink(seg.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  closeSync(): void {
    if (this.buffered !== '' && this.fd !== null) {
      try {
        writeSync(this.fd, this.buffered);
      } catch (err) {
        this.onWriteError(err as Error);
      }
      this.buffered = '';
      for (const w of this.waiters.splice(0)) w();
    }
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        // see rotate()
      }
      this.fd = null;
    }
  }
}
