/**
 * What the machine was doing while a phase ran. The servers, the load generator and
 * whatever else runs on the host share the same cores, so every phase also records:
 * the server's own CPU time per answer (barely moved by contention, unlike req/s and
 * latency) and the share of the phase during which some task waited for a CPU (Linux
 * pressure stall information) — the part of a latency figure that is the machine's, not
 * the server's. Both are undefined where /proc does not provide them.
 */
import { readFile } from 'node:fs/promises';

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
