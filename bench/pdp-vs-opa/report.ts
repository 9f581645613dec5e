/**
 * The comparison table and the targets, printed as Markdown so the same text reads
 * in a terminal and pastes into docs/benchmarks.md.
 */
import type { PhaseResult } from './load.js';

export interface Row {
  phase: string;
  scopegate: PhaseResult;
  /** Absent when OPA was not run at this rate (above its own peak). */
  opa?: PhaseResult | undefined;
}

export interface TargetCheck {
  name: string;
  measured: string;
  target: string;
  met: boolean;
}

const num = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
export const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? a / b : Number.NaN);
export const times = (r: number) => (Number.isFinite(r) ? `${r.toFixed(2)}×` : 'n/a');

export function resultsTable(rows: Row[]): string {
  const out = [
    '| phase | scopegate req/s | p50 ms | p99 ms | CPU µs/dec | OPA req/s | p50 ms | p99 ms | CPU µs/dec | req/s scopegate/OPA | CPU/dec OPA/scopegate | CPU stall (scopegate phase) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const NA = Number.NaN;
  for (const r of rows) {
    const s = r.scopegate;
    const o = r.opa;
    const cpuRatio = ratio(o?.cpuUsPerDecision ?? NA, s.cpuUsPerDecision ?? NA);
    const stall = s.cpuStallShare !== undefined ? `${Math.round(s.cpuStallShare * 100)}%` : 'n/a';
    const opaCells = o
      ? `${num(o.rps)} | ${ms(o.p50Ms)} | ${ms(o.p99Ms)} | ${num(o.cpuUsPerDecision ?? NA)}`
      : 'not run (above its peak) | | |';
    out.push(
      `| ${r.phase} | ${num(s.rps)} | ${ms(s.p50Ms)} | ${ms(s.p99Ms)} | ${num(s.cpuUsPerDecision ?? NA)} ` +
        `| ${opaCells} | ${times(ratio(s.rps, o?.rps ?? NA))} | ${times(cpuRatio)} | ${stall} |`,
    );
  }
  return out.join('\n');
}

export function targetsTable(checks: TargetCheck[]): string {
  const out = ['| target | measured | goal | status |', '|---|---:|---:|---|'];
  for (const c of checks) out.push(`| ${c.name} | ${c.measured} | ${c.target} | ${c.met ? 'met' : '**not met**'} |`);
  return out.join('\n');
}

/** Problems that make a phase's figures unreliable: errors, non-2xx, answers that were not allows. */
export function phaseProblems(label: string, r: PhaseResult): string[] {
  const p: string[] = [];
  if (r.count === 0) p.push(`${label}: no successful answers`);
  if (r.errors > 0) p.push(`${label}: ${r.errors} connection errors/timeouts`);
  if (r.non2xx > 0) p.push(`${label}: ${r.non2xx} non-2xx answers`);
  if (r.mismatches > 0) p.push(`${label}: ${r.mismatches} answers were not "allow"`);
  if (r.unanswered > 0) p.push(`${label}: ${r.unanswered} requests unanswered when the phase was cut off (the server fell behind the rate)`);
  return p;
}
