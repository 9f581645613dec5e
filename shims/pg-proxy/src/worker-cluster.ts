/**
 * Running the pg-proxy as several processes (node:cluster) that share the listening socket,
 * so the proxy's per-statement work uses more than one core.
 *
 * Sessions live in one worker each, but a CancelRequest arrives on a new connection that
 * may land in any worker (§55.2.9: the client opens a new connection and sends the key it
 * got in BackendKeyData). So the process id the proxy hands out carries the index of the
 * worker that owns the session in its top bits; a worker that does not know a key forwards
 * the request over cluster IPC to the primary, which passes it to the owner, which checks
 * the whole key (process id and secret) against its own sessions like a local request.
 * The secret never leaves the machine and is never logged.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';

/** Bits of the BackendKeyData process id below the worker index (the rest of it is random). */
const INDEX_SHIFT = 24;
/** Worker indexes fit in 6 bits, keeping the process id a positive int32. */
export const MAX_WORKERS = 64;

/** A fresh BackendKeyData process id for a session of worker `index`. */
export function newProcessId(index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_WORKERS) throw new RangeError(`worker index ${index} out of range`);
  return ((index << INDEX_SHIFT) | (randomBytes(4).readUInt32BE() & ((1 << INDEX_SHIFT) - 1))) >>> 0;
}

/** The worker that handed out `pid` (any int32 maps to some index; unknown keys just find no session). */
export function workerOfProcessId(pid: number): number {
  return (pid >>> INDEX_SHIFT) & 0xff;
}

/** The IPC message of a forwarded CancelRequest. */
export interface CancelMessage {
  type: 'scopegate:pg-cancel';
  pid: number;
  secret: number;
}

export function isCancelMessage(m: unknown): m is CancelMessage {
  const c = m as Partial<CancelMessage> | null;
  return typeof c === 'object' && c !== null && c.type === 'scopegate:pg-cancel' && Number.isInteger(c.pid) && Number.isInteger(c.secret);
}

export interface PrimaryOptions {
  workers: number;
  /** Environment variable that tells a worker its index. */
  indexEnv: string;
  log: (event: Record<string, unknown>) => void;
}

/**
 * The primary process: forks the workers, routes forwarded cancels to their owners, restarts
 * a worker that dies after it started listening, and gives up (exit 1) when one dies before
 * listening — a configuration or port problem that restarting would only repeat.
 */
export function runPrimary(opts: PrimaryOptions): { stop(): Promise<void> } {
  const workers = new Map<number, Worker>();
  let stopping = false;
  const fork = (index: number): void => {
    const w = cluster.fork({ [opts.indexEnv]: String(index) });
    let listening = false;
    workers.set(index, w);
    w.on('listening', () => {
      listening = true;
      opts.log({ event: 'worker_listening', worker: index, pid: w.process.pid });
    });
    w.on('message', (m: unknown) => {
      if (!isCancelMessage(m)) return;
      // Only the owner can match the key; unknown owners drop it, as an unknown key is dropped.
      workers.get(workerOfProcessId(m.pid))?.send(m);
    });
    w.on('exit', (code, signal) => {
      if (workers.get(index) !== w) return;
      workers.delete(index);
      if (stopping) return;
      opts.log({ event: 'worker_exited', worker: index, code, signal, restarting: listening });
      if (!listening) {
        void stop().then(() => process.exit(1));
        return;
      }
      setTimeout(() => {
        if (!stopping) fork(index);
      }, 500).unref();
    });
  };
  const stop = async (): Promise<void> => {
    stopping = true;
    const exits = [...workers.values()].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of workers.values()) w.process.kill('SIGTERM');
    await Promise.race([Promise.all(exits), new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
  };
  for (let i = 0; i < opts.workers; i++) fork(i);
  return { stop };
}
