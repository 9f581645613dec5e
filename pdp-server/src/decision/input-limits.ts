/**
 * Structural limits on free-form input (JSON body summaries, tool arguments), checked
 * iteratively so that a hostile, deeply nested document cannot exhaust the stack here or in
 * the WASM serialiser. The schema already bounds string lengths and array sizes.
 */
import { LIMITS } from '../contract.js';
import { ScopegateError } from '../errors.js';

export function assertWithinLimits(value: unknown, maxDepth: number = LIMITS.depth + 8, maxNodes = 100_000): void {
  const stack: { v: unknown; d: number }[] = [{ v: value, d: 0 }];
  let nodes = 0;
  while (stack.length > 0) {
    const { v, d } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > maxDepth) throw new ScopegateError('input_too_deep', `input is nested deeper than ${maxDepth} levels`);
    const children = Array.isArray(v) ? v : Object.values(v);
    nodes += children.length;
    if (nodes > maxNodes) throw new ScopegateError('input_too_deep', `input has more than ${maxNodes} values`);
    for (const c of children) stack.push({ v: c, d: d + 1 });
  }
}
