/**
 * What the machine was doing while a phase ran. The servers, the load generator and
 * whatever else runs on the host share the same cores, so every phase also records:
 * the server's own CPU time per answer (barely moved by contention, unlike req/s and
 * latency) and the share of the phase during which some task waited for a CPU (Linux
 * pressure stall information) — the part of a latency figure that is the machine's, not
 * the server's. Both are undefined where /proc does not provide them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';

/** Clock ticks per second of /proc's CPU counters (USER_HZ: 100 on every mainstream Linux build). */
const USER_HZ = 100;

/** CPU time (user + system, all threads) a process has used so far, from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

/** User and system CPU seconds, as /proc reports them. */
export interface CpuTimes {
  user: number;
  sys: number;
}

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  user: number;
  sys: number;
}

/**
 * Every process's parent, name and CPU times, from /proc/<pid>/stat (processes that vanish
 * mid-read are skipped). Synchronous: /proc reads do not block, and a signal handler can use it.
 */
function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat = '';
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const fields = stat.slice(close + 2).split(' ');
    out.push({
      pid: Number(name),
      comm: stat.slice(stat.indexOf('(') + 1, close),
      ppid: Number(fields[1]),
      // Its own time plus its reaped children's (cutime, cstime): Postgres's backends end
      // with their connections, and their time then shows only in the postmaster's counters.
      user: (Number(fields[11]) + Number(fields[13])) / USER_HZ,
      sys: (Number(fields[12]) + Number(fields[14])) / USER_HZ,
    });
  }
  return out;
}

/**
 * CPU used so far by a process and its running descendants (a proxy's cluster workers),
 * or, with `comm`, by every process of that name (all of Postgres's server processes).
 */
export async function cpuTimesOf(which: { root: number } | { comm: string }): Promise<CpuTimes> {
  const procs = allProcesses();
  const picked = new Set<number>();
  if ('comm' in which) {
    for (const p of procs) if (p.comm === which.comm) picked.add(p.pid);
  } else {
    picked.add(which.root);
    // Parents come before children in no guaranteed order: repeat until nothing is added.
    for (let grew = true; grew; ) {
      grew = false;
      for (const p of procs) if (!picked.has(p.pid) && picked.has(p.ppid)) grew = picked.add(p.pid) !== undefined;
    }
  }
  const t = { user: 0, sys: 0 };
  for (const p of procs) {
    if (!picked.has(p.pid)) continue;
    t.user += p.user;
    t.sys += p.sys;
  }
  return t;
}

/** CPU seconds of this process's children that have exited and been reaped (e.g. finished pgbench runs). */
export async function reapedChildrenCpuSeconds(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / USER_HZ; // cutime + cstime
}

/** Cumulative µs during which at least one task waited for a CPU (/proc/pressure/cpu, "some"). */
export async function cpuStallMicros(): Promise<number | undefined> {
  try {
    const text = await readFile('/proc/pressure/cpu', 'utf8');
    const m = /^some .*total=(\d+)/m.exec(text);
    return m?.[1] !== undefined ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Server CPU and machine CPU pressure over one phase. */
export async function watchPhase(pid: number): Promise<() => Promise<{ cpuSeconds?: number; stallShare?: number }>> {
  const cpu0 = await cpuSeconds(pid);
  const stall0 = await cpuStallMicros();
  const t0 = process.hrtime.bigint();
  return async () => {
    const cpu1 = await cpuSeconds(pid);
    const stall1 = await cpuStallMicros();
    const elapsedUs = Number(process.hrtime.bigint() - t0) / 1000;
    return {
      ...(cpu0 !== undefined && cpu1 !== undefined ? { cpuSeconds: cpu1 - cpu0 } : {}),
      ...(stall0 !== undefined && stall1 !== undefined && elapsedUs > 0 ? { stallShare: (stall1 - stall0) / elapsedUs } : {}),
    };
  };
}

/**
 * Restrict processes (every thread of each; threads they start later inherit it) to a CPU
 * list such as `0` or `1-3`, with util-linux's `taskset` (Linux only; needs the right to
 * change those processes, i.e. root for another user's). Used to lay out a deployment's
 * topology on one machine: the server under test on cores of its own, its database and its
 * clients on the others. Synchronous, so a signal handler can undo it on the way out.
 */
export function pinProcesses(which: { pid: number } | { comm: string }, cpuList: string): number[] {
  const pids = 'pid' in which ? [which.pid] : allProcesses().filter((p) => p.comm === which.comm).map((p) => p.pid);
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
    } catch (err) {
      // A process that ended in the meantime is fine; anything else means the layout is not what it claims.
      if (existsSync(`/proc/${pid}`)) throw new Error(`taskset could not pin ${pid} to CPUs ${cpuList}: ${(err as Error).message}`);
    }
  }
  return pids;
}

/** Every CPU of the machine, as a `taskset` list. */
export const ALL_CPUS = `0-${availableParallelism() - 1}`;
